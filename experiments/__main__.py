"""``archbench COMMAND`` (or ``python -m experiments COMMAND``): fit, validate, test, predict (LightningCLI),
compare, attention, align, generate, probe, sweep, export, lr_find, data."""

from __future__ import annotations

import os
import sys

USAGE = """usage: archbench COMMAND [options]    (or: python -m experiments COMMAND [options])

commands:
  fit | validate | test | predict   LightningCLI, e.g. fit --config experiments/dna/lstm.yaml
  compare                           every model x seed of a comparison file, one table:
                                    compare --config experiments/dna/compare.yaml [--seeds N] [--out DIR]
  attention                         PNG of every layer's and head's attention over a text:
                                    attention --ckpt C --text "..." (its run's config.yaml, or --config)
  align                             PNG of a seq2seq model's attention over the source per written symbol:
                                    align --config experiments/seq2seq/transformer.yaml --ckpt C --text WORD
  generate                          text from a language model, printed as it comes:
                                    generate --config experiments/lm/gpt.yaml --ckpt C --prompt "..."
                                    generate --weights data/pretrained/smollm2-135m --prompt "..."
  probe                             the bias probe (CrowS-Pairs) of a causal or masked LM:
                                    probe crows_pairs --weights data/pretrained/smollm2-135m | --config C --ckpt K
  sweep                             hyper-parameter search with Optuna, trials in parallel workers:
                                    sweep --config experiments/sweeps/dna_lstm.yaml [--workers N]
  export                            a trained ResNet/ViT as timm-named safetensors: export --config ... --ckpt C --out F
  lr_find                           learning-rate range test (Lightning's Tuner): lr_find --config ...
  data                              fetch datasets and weights: data sortseq | rotten_tomatoes | minilm |
                                    fashion_mnist | efficientnet_lite0 | austen | python_docs | smollm2 |
                                    cmudict | crows_pairs | dinov2_small,
                                    or write the simulated DNA: data simulate --out DIR,
                                    or encode a large DNA file: data encode --input F --out DIR

'archbench COMMAND --help' for a command's options; 'archbench --version' for the version.
"""

COMMANDS = {
    "compare": "experiments.compare",
    "attention": "experiments.attention",
    "align": "experiments.align",
    "export": "experiments.export",
    "generate": "experiments.generate",
    "probe": "experiments.probe",
    "sweep": "experiments.sweep",
    "lr_find": "experiments.lr_find",
    "data": "experiments.data",
}


def hub_offline_when_unreachable(timeout: float = 2.0) -> bool:
    """No route to the Hugging Face Hub (its host does not resolve or answer, and no proxy is set to reach it
    through): run offline as ``HF_HUB_OFFLINE=1`` does, before any Hugging Face library is imported, so that a hub
    name loads from the local cache or stops at once with "offline" instead of retrying for a minute. Returns
    whether it did; an explicit ``HF_HUB_OFFLINE`` (0 or 1) is left as it is."""
    import socket
    import threading
    from urllib.parse import urlparse

    kept = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    if any(os.environ.get(v) for v in kept):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    answered = []

    def connect() -> None:  # in a thread: the name lookup has no timeout of its own
        try:
            socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
            answered.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout)
    if answered:
        return False
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    return True


def _after_sigterm(err: BaseException) -> bool:
    """Whether ``err`` is a multi-process run's peer gone after a SIGTERM: ``LastCheckpoint.on_exception`` marks it
    (``after_sigterm``) where Lightning had received one; or it came out of the SIGTERM handler itself (a frame of
    its traceback, or of what it was raised from, holds ``signum`` 15): Lightning's, under DDP, broadcasts the stop
    to the other processes from inside the handler, which fails when they stopped first."""
    import signal

    while err is not None:
        if getattr(err, "after_sigterm", False):
            return True
        tb = err.__traceback__
        while tb is not None:
            if tb.tb_frame.f_locals.get("signum") == signal.SIGTERM:
                return True
            tb = tb.tb_next
        err = err.__cause__ or err.__context__
    return False


def _where_set(said: str, argv: list[str]) -> str:
    """``FILE:LINE: `` of the config file that set the option a fit/validate/test/predict message names; ``""``
    for the other commands (their own files are named by their own messages) or where none is found."""
    from experiments.configs import expand_configs, where_set

    if argv[0] in COMMANDS:
        return ""
    try:
        return where_set(said, expand_configs(argv[1:]))
    except Exception:  # a config that does not even load was said by the message itself
        return ""


# what the same command does again when a stopped run had saved nothing
_OVER = {"fit": "'fit ... --ckpt_path last' starts it over", "compare": "the same command starts it over"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        from archbench import __version__

        print(f"archbench {__version__}")
        return 0
    every = ("fit", "validate", "test", "predict", *COMMANDS)
    if argv[0] not in every and not argv[0].startswith("-"):  # LightningCLI's own would list its four alone
        import difflib

        close = difflib.get_close_matches(argv[0], every, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"error: {argv[0]!r} is not a command{hint}; commands: {', '.join(every)}", file=sys.stderr)
        return 2
    os.environ.setdefault("WANDB_SILENT", "true")
    hub_offline_when_unreachable()
    import warnings

    # a warning in one line, without the source line that raised it (trial 30: "  rank_zero_warn(" under each)
    with_source = warnings.formatwarning
    warnings.formatwarning = lambda message, category, filename, lineno, line=None: with_source(
        message, category, filename, lineno, line=""
    )
    # Lightning 2.6's own use of a torch API that newer torch deprecates, printed at every fit; nothing a user
    # can act on (lightning/pytorch/utilities/_pytree.py).
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    if argv[0] in ("validate", "test", "predict"):
        # ModelCheckpoint's state, restored from the evaluated checkpoint though an evaluation saves none: its
        # "dirpath has changed ... won't be reloaded" at every test of a run's checkpoint concerns nothing here
        warnings.filterwarnings("ignore", message=r"The dirpath has changed from .* won't be reloaded")

    # Imported late so that --help stays fast.
    from jsonargparse import ArgumentError
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from archbench.errors import UserError
    from experiments.configs import one_line

    command, rest = argv[0], argv[1:]
    resume = {"fit": "'fit ... --ckpt_path last' resumes it", "compare": "the same command again resumes it"}
    try:
        if command in COMMANDS:
            import importlib

            importlib.import_module(COMMANDS[command]).main(rest)
        else:
            from experiments.cli import ExperimentCLI

            # args=None lets LightningCLI read sys.argv itself (it warns when both are given).
            ExperimentCLI(args=None if argv == sys.argv[1:] else argv)
    except (UserError, ArgumentError) as err:  # ArgumentError: jsonargparse's (unknown option, wrong type)
        said = one_line(err) if isinstance(err, ArgumentError) else str(err)
        # an option's mistake (data.train_path: ...) starts with the config file and line that set it
        print(f"error: {_where_set(said, argv)}{said}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's status for SIGINT
        print("interrupted", file=sys.stderr)
        return 130
    except SIGTERMException as err:  # Lightning's, after the batch under way (a SystemExit of status 0)
        saved = getattr(err, "last_checkpoint", None)  # set by LastCheckpoint where it saved that step
        if getattr(err, "said", None):  # the local launcher's, for the runs of its workers
            said = err.said
        elif saved and command in resume:
            said = f"the run stopped after a whole step, saved in {saved}; {resume[command]}"
        elif command in resume and getattr(err, "saved_before", True) is False:
            said = f"the step under way was not saved, nor anything of this run before it: {_OVER[command]}"
        elif command in resume:
            said = f"the step under way was not saved; {resume[command]} from the run's last save"
        else:
            said = "stopped"
        print(f"terminated (SIGTERM): {said}", file=sys.stderr)
        return 143  # the shell's status for SIGTERM, whatever was saved
    except SystemExit as err:
        # Lightning's on Ctrl-C during a fit: status 1, after its "Detected KeyboardInterrupt"
        from experiments.checkpoints import interrupted_at

        stopped = interrupted_at()
        if err.code != 1 or stopped is None:
            raise
        step, saved, saved_step = stopped.step, stopped.saved, stopped.saved_step
        where = "during " + command if step < 0 else f"at step {step}"  # -1: a validation, the sanity check
        if command in _OVER and not saved:
            # trial 28: "resumes it from the run's last save", of which it had none; trial 33: the folder left
            # without a checkpoint, named
            folder = f" (its folder {stopped.folder} holds no checkpoint)" if stopped.folder else ""
            said = f"nothing of this run was saved yet{folder}: {_OVER[command]}"
        elif command in resume and saved_step is not None and 0 <= saved_step < step:
            # trial 33: "the step under way was not saved", where the 94 before it were not either
            done = step - saved_step
            said = (f"the last {done} step{'s' * (done != 1)} and the one under way were not saved (the run's last "
                    f"save is of step {saved_step}); {resume[command]} from step {saved_step}")  # fmt: skip
        elif command in resume:
            lost = "the step under way was not saved; " if step >= 0 else ""
            said = f"{lost}{resume[command]} from the run's last save" + (
                f" (at step {saved_step})" if saved_step is not None else ""
            )
        else:
            said = ""
        print(f"interrupted (Ctrl-C) {where}" + (f": {said}" if said else ""), file=sys.stderr)
        return 130
    except RuntimeError as err:
        if not _after_sigterm(err):
            raise
        # A SIGTERM to every process of a multi-process run (a scheduler's, or a kill of the process group): the
        # processes stop a step apart, and one still in a collective finds its peer gone (gloo's "Connection
        # closed by peer"), which is the stop, not a fault of its own.
        from archbench.errors import first_line

        again = f"; {resume[command]} from the run's last save" if command in resume else ""
        print(f"terminated (SIGTERM): stopped when another process of the run had stopped ({type(err).__name__}: "
              f"{first_line(err, 120)}){again}", file=sys.stderr)  # fmt: skip
        return 143
    return 0


def cli() -> None:
    """The ``archbench`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
