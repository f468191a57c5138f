"""``python -m experiments generate``: text from a language model, printed as it comes.

From a run: ``generate --config experiments/lm/gpt.yaml --ckpt RUN/checkpoints/best.ckpt --prompt "..."``
(the run's configs rebuild the model; the checkpoint gives the weights and the tokenizer it was trained
with, so the corpus need not be on disk). From pretrained weights: ``generate --weights data/pretrained/smollm2-135m --prompt "..."`` (our GPT
holding SmolLM2, with its own tokenizer).
"""

from __future__ import annotations

import math
import sys

import torch

from archbench.checkpoint_files import checkpoint_task
from archbench.errors import ConfigError, DataError
from datamodules.lm_tokenize import text_pieces
from experiments.configs import CommandParser


def _parser() -> CommandParser:
    parser = CommandParser(prog="python -m experiments generate", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", action="append", help="the run's config file(s), in order; empty: the run's config.yaml"
    )
    parser.add_argument("--ckpt", help="a language model's checkpoint (weights and tokenizer)")
    parser.add_argument("--weights", help="pretrained weights instead: a GGUF file or a folder holding one")
    parser.add_argument("--prompt", required=True, help="the text to continue")
    parser.add_argument("--max_new_tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8, help="0: greedy (the most likely token)")
    parser.add_argument("--top_k", type=int, default=None, help="sample among the k most likely tokens")
    parser.add_argument("--top_p", type=float, default=None, help="sample within this much probability mass")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_stop", action="store_true", help="go on past the end-of-text token")
    return parser


def load_from_run(configs: list[str] | None, ckpt: str, overrides: list[str]):
    """(task, tokenizer, context) of a trained language model, causal or masked (also the bias probe's); the
    checkpoint's tokenizer replaces ``data.tokenizer``, so the corpus need not be on disk."""
    from datamodules.lm import LanguageModelDataModule
    from experiments.from_checkpoint import cli_from_checkpoint

    def tokenizer_of(checkpoint: dict) -> dict[str, str]:
        state = checkpoint.get(LanguageModelDataModule.__qualname__)
        if not state or "tokenizer" not in state:
            name = checkpoint_task(checkpoint) or "another task"
            raise ConfigError(
                f"--ckpt {ckpt}: a checkpoint of {name}, not of a language model (LanguageModelTask)"
            )
        return {"data.tokenizer": state["tokenizer"]}

    cli, _ = cli_from_checkpoint(ckpt, configs, overrides, LanguageModelDataModule,
                                 "a language model's corpus (use a language-model config)", tokenizer_of)  # fmt: skip
    return cli.model, cli.datamodule.tokenizer, cli.datamodule.seq_len


def load_from_weights(path: str):
    from datamodules.lm_tokenize import pretrained_lm_tokenizer
    from lit_models.gpt import pretrained_gpt

    net = pretrained_gpt(path)
    return net, pretrained_lm_tokenizer(path), net.config.block_size


def main(argv: list[str]) -> None:
    args, overrides = _parser().parse_known_args(argv)
    if bool(args.ckpt) == bool(args.weights):
        which = "not both" if args.ckpt else "one of them"
        raise ConfigError(f"generate: give --ckpt (a run's checkpoint) or --weights (pretrained), {which}")
    if args.max_new_tokens < 1:
        raise ConfigError(
            f"generate --max_new_tokens: {args.max_new_tokens} is not a positive number of tokens"
        )
    if args.top_k is not None and args.top_k < 1:
        raise ConfigError(f"generate --top_k: {args.top_k} is not a positive number of tokens")
    # nan stops sampling with torch's traceback; inf samples uniformly
    if not math.isfinite(args.temperature):
        raise ConfigError(f"generate --temperature: {args.temperature} is not a finite number (0 is greedy)")
    if args.temperature < 0:
        raise ConfigError(f"generate --temperature: {args.temperature} is below 0 (0 is greedy)")
    if args.top_p is not None and not 0 < args.top_p <= 1:  # nan and inf included
        raise ConfigError(f"generate: --top_p {args.top_p} is outside (0, 1]")
    from lit_models.generation import generate

    if args.ckpt:
        from lit_models.masked_lm import MaskedLanguageModelTask

        task, tokenizer, context = load_from_run(args.config, args.ckpt, overrides)
        if isinstance(task, MaskedLanguageModelTask):
            raise ConfigError(f"--ckpt {args.ckpt}: a masked LM fills in tokens, it does not continue text")
        net = task.net
    elif overrides:  # a run's options (or a typo) would be ignored: pretrained weights have no run to change
        raise ConfigError(
            f"generate --weights: unrecognized option {overrides[0]!r} (a run's options go with --ckpt)"
        )
    else:
        net, tokenizer, context = load_from_weights(args.weights)
    net.eval()
    # a prompt read from a Windows file: the corpus was read with universal newlines, so the model saw "\n" alone
    prompt = args.prompt.replace("\r\n", "\n")
    ids = torch.as_tensor(tokenizer.encode(prompt, "--prompt"))[None]
    if ids.shape[1] == 0 and tokenizer.eot_id is not None:
        # nothing to continue: start a new document, as after the end-of-text token between documents
        ids = torch.tensor([[tokenizer.eot_id]])
    elif ids.shape[1] == 0:
        raise DataError(
            f"--prompt: {args.prompt!r} is empty after tokenizing, and this tokenizer has no end-of-text token "
            "to start a text from: give some text to continue"
        )
    generator = torch.Generator().manual_seed(args.seed)
    stop = None if args.no_stop else tokenizer.eot_id
    sys.stdout.write(prompt)
    tokens = generate(
        net, ids, args.max_new_tokens, context, args.temperature, args.top_k, args.top_p, stop, generator
    )
    written: list[int] = []  # the new tokens, to say where generation stopped

    def counted():
        for token in tokens:
            written.append(int(token))
            yield written[-1]

    context_ids = [] if ids.shape[1] == 1 and int(ids[0, 0]) == tokenizer.eot_id else ids[0].tolist()
    for piece in text_pieces(counted(), tokenizer, stop, context_ids):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if stop is not None and written and written[-1] == stop:
        print(
            f"generate: stopped at the end-of-text token after {len(written) - 1} new token(s) "
            f"(of --max_new_tokens {args.max_new_tokens}); --no_stop goes on past it",
            file=sys.stderr,
        )
