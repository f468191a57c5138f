"""Guards: non-finite losses, reproducibility by seed, the global batch size, secrets kept out of run files,
no remote code, and bad checkpoints named in one line."""

import random

import pytest
import torch
import yaml
from conftest import CNN, CSV_ONLY, ROOT, TINY_DATA, last_line, run_main

from archbench.errors import ConfigError, DataError, NonFiniteLossError
from experiments.cli import ExperimentCLI


def _cli(tmp_path, *extra):
    args = ["--config", CNN, *TINY_DATA, *CSV_ONLY, f"--trainer.logger.init_args.save_dir={tmp_path}", *extra]
    return ExperimentCLI(args=args, run=False)


def test_a_nan_loss_stops_the_run_before_the_update_and_saves_nothing(tmp_path):
    from faults import NaNAt

    cli = _cli(tmp_path, "--trainer.max_epochs=2")
    cli.trainer.callbacks.append(NaNAt(step=3))
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step 3 \(epoch 0, batch 3\)"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
    saved = list(tmp_path.rglob("*.ckpt"))  # the mid-epoch validation at step 2 saved; nothing after the NaN
    assert saved and all(torch.load(f, weights_only=True)["global_step"] <= 3 for f in saved)


def test_a_nan_loss_stops_the_command_with_one_line(in_tmp):
    nan = {"trainer": {"callbacks+": [{"class_path": "faults.NaNAt", "init_args": {"step": 2}}]}}
    result = run_main(
        "fit", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--config", yaml.safe_dump(nan), cwd=in_tmp
    )
    assert result.returncode == 2
    assert last_line(result).startswith("error: training loss is nan at step 2 (epoch 0, batch 2)")


def test_a_nan_validation_loss_stops_the_run_before_its_checkpoint(tmp_path, capsys):
    """Trial 22: Lightning's EarlyStopping ended such a run silently with status 0, and ModelCheckpoint had kept
    the NaN validation's weights as the best."""
    from faults import NaNValidationFrom

    cli = _cli(tmp_path, "--trainer.max_epochs=2")  # validations at steps 2 and 4 (half an epoch each)
    cli.trainer.callbacks.append(NaNValidationFrom(step=4))
    with pytest.raises(NonFiniteLossError, match=r"^validation loss is nan after step 4 \(epoch 0\): the model's "
                       r"outputs are no longer finite; stopped before this validation's checkpoint"):  # fmt: skip
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    saved = list(tmp_path.rglob("*.ckpt"))  # step 2's validation saved; nothing of step 4's
    assert saved and all(torch.load(f, weights_only=True)["global_step"] == 2 for f in saved)
    cli = _cli(tmp_path / "skip", "--trainer.max_epochs=1", "--model.nonfinite_loss=skip")
    cli.trainer.callbacks.append(NaNValidationFrom(step=4))
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert "warning: validation loss is nan after step 4 (epoch 0): the model's outputs are no longer finite; " \
           "going on (model.nonfinite_loss=skip)" in capsys.readouterr().out  # fmt: skip


def test_skipping_nan_batches_counts_them_and_keeps_training(tmp_path):
    from faults import NaNAt

    cli = _cli(tmp_path, "--trainer.max_epochs=1", "--model.nonfinite_loss=skip")
    nan = NaNAt(step=1)
    cli.trainer.callbacks.append(nan)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.model.skipped_batches == 1 and nan.changed is False  # that batch left the weights as they were
    assert cli.trainer.global_step == 4  # Lightning still counts the step (and the LR schedule moves on)
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())


def _val_metrics(tmp_path, seed: int) -> dict:
    cli = _cli(tmp_path / str(seed) / str(random.random()), "--trainer.max_epochs=1", "--trainer.deterministic=true",
               f"--seed_everything={seed}")  # fmt: skip
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/")}


def test_same_seed_same_metrics_other_seed_other_metrics(tmp_path):
    a, b, c = _val_metrics(tmp_path, 1), _val_metrics(tmp_path, 1), _val_metrics(tmp_path, 2)
    assert a and a == b
    assert a != c


def test_global_batch_size_splits_over_processes_and_accumulation(tmp_path):
    cli = _cli(tmp_path, "--data.global_batch_size=32", "--trainer.accumulate_grad_batches=2")
    cli.datamodule.trainer = cli.trainer
    cli.datamodule.setup("fit")
    assert cli.datamodule.train_dataloader().batch_sampler.batch_size == 16  # 32 / (1 process x 2)
    cli = _cli(tmp_path, "--data.global_batch_size=30", "--trainer.accumulate_grad_batches=4")
    cli.datamodule.trainer = cli.trainer
    cli.datamodule.setup("fit")
    with pytest.raises(
        DataError, match=r"data.global_batch_size: 30 does not split over 1 process\(es\) x 4"
    ):
        cli.datamodule.train_dataloader()


def test_nothing_trusts_remote_code_by_default():
    sources = [*ROOT.glob("datamodules/*.py"), *ROOT.glob("lit_models/*.py"), *ROOT.glob("experiments/*.py")]
    assert sources and not [str(p) for p in sources if "trust_remote_code=True" in p.read_text()]


class Pickled:
    """Not a tensor: a checkpoint holding it needs full unpickling, which the CLI refuses."""


def test_each_kind_of_bad_checkpoint_is_named_in_one_line(in_tmp):
    """Missing, a folder, not a checkpoint, truncated, pickled objects, a torch file that is no Lightning
    checkpoint: each a ConfigError with its own reason, before Lightning reads the file; the command prints it
    as one line with exit status 2."""
    ExperimentCLI(args=["fit", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--trainer.max_epochs=1"])
    good = next(in_tmp.rglob("last.ckpt"))
    checkpoint = torch.load(good, weights_only=True)
    torch.save({**checkpoint, "extra": Pickled()}, in_tmp / "unsafe.ckpt")
    (in_tmp / "truncated.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (in_tmp / "notes.ckpt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.ones(2)}, in_tmp / "plain.pt")
    from safetensors.torch import save_file

    save_file({"weights": torch.ones(2)}, str(in_tmp / "w.safetensors"))
    (in_tmp / "folder.ckpt").mkdir()
    cases = {
        # what the folder holds instead (trial 25: best checkpoints are named best-epoch=E-step=S.ckpt)
        "missing.ckpt": "ckpt_path: file 'missing.ckpt' not found ('.' holds notes.ckpt, truncated.ckpt, unsafe.ckpt, newest first)",
        "folder.ckpt": "ckpt_path: 'folder.ckpt' is a directory, expected a checkpoint file",
        "notes.ckpt": "ckpt_path: 'notes.ckpt' is not a checkpoint or is damaged",
        "truncated.ckpt": "ckpt_path: 'truncated.ckpt' is not a checkpoint or is damaged (truncated",
        "unsafe.ckpt": "ckpt_path: 'unsafe.ckpt' refused: it holds more than tensors and plain values",
        "plain.pt": "ckpt_path: 'plain.pt' is a torch file but not a Lightning checkpoint",
        "w.safetensors": "ckpt_path: 'w.safetensors' holds weights alone (safetensors), not a run's checkpoint",
    }
    for name, expected in cases.items():
        with pytest.raises(ConfigError) as caught:
            ExperimentCLI(args=["validate", "--config", CNN, *TINY_DATA, *CSV_ONLY, f"--ckpt_path={name}"])
        assert str(caught.value).startswith(expected), (name, str(caught.value))
    result = run_main(
        "validate", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--ckpt_path=truncated.ckpt", cwd=in_tmp
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert last_line(result).startswith("error: " + cases["truncated.ckpt"])
    text = [
        str(ROOT / "experiments" / "text" / "rotten_tomatoes.yaml"),
        str(ROOT / "experiments" / "text" / "lstm.yaml"),
    ]
    result = run_main("test", "--config", text[0], "--config", text[1], f"--ckpt_path={good}", cwd=in_tmp)
    assert last_line(result) == (f"error: ckpt_path: {str(good)!r} was trained on DNADataModule data, and the "
                                 "config reads TextClassificationDataModule: give the config it was trained with")  # fmt: skip
    lm = str(ROOT / "experiments" / "lm" / "gpt.yaml")  # a checkpoint of another task: named as such
    result = run_main("test", "--config", lm, *CSV_ONLY, f"--ckpt_path={good}", cwd=in_tmp)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert last_line(result) == (f"error: ckpt_path: {str(good)!r} is a checkpoint of PredictionTask, not of the "
                                 "config's model LanguageModelTask: give that task's config (or a checkpoint of this "
                                 "one)")  # fmt: skip


def test_a_checkpoint_of_another_model_is_refused_in_one_line(in_tmp):
    """A checkpoint trained with other net options (or another vocabulary) given to test: one line naming the
    file and the first tensors that differ, not Lightning's page of size mismatches."""
    ExperimentCLI(args=["fit", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--trainer.max_steps=1"])
    ckpt = next(in_tmp.rglob("last.ckpt"))
    wider = "--model.net.init_args.channels=48"
    result = run_main(
        "test", "--config", CNN, *TINY_DATA, *CSV_ONLY, wider, f"--ckpt_path={ckpt}", cwd=in_tmp
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert last_line(result).startswith(
        f"error: {ckpt} does not fit the model that this config and data build ("
    )
    assert "tensor(s) of another shape: net." in last_line(result)


def test_evaluating_last_or_best_finds_the_newest_run_and_no_checkpoint_is_said(in_tmp):
    """validate/test/predict --ckpt_path last|best: the newest run of this model (Lightning looked only in the
    fresh trainer's folder, found nothing and tested the untrained model with exit status 0). A run's own
    config.yaml builds the model for the commands that are not LightningCLI subcommands (export, probe, ...)."""
    ExperimentCLI(args=["fit", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--trainer.max_epochs=1"])
    run = in_tmp / "lightning_logs" / "version_0"
    for name, expected in (
        ("last", run / "checkpoints" / "last.ckpt"),
        ("best", next(run.rglob("best-*.ckpt"))),
    ):
        result = run_main("test", "--config", CNN, *TINY_DATA, *CSV_ONLY, f"--ckpt_path={name}", cwd=in_tmp)
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"test: {name} checkpoint {expected.relative_to(in_tmp)}" in result.stdout
    untrained = run_main("test", "--config", CNN, *TINY_DATA, *CSV_ONLY, cwd=in_tmp)
    assert "warning: test without --ckpt_path: the model as its config builds it" in untrained.stderr
    folders = sorted(p.name for p in (in_tmp / "lightning_logs").iterdir())
    lstm = str(
        ROOT / "experiments" / "dna" / "lstm.yaml"
    )  # a CNN checkpoint for an LSTM: refused, nothing written
    other = run_main("test", "--config", lstm, *TINY_DATA, *CSV_ONLY, f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                     cwd=in_tmp)  # fmt: skip
    assert other.returncode == 2 and "does not fit the model" in last_line(other)
    assert sorted(p.name for p in (in_tmp / "lightning_logs").iterdir()) == folders
    nothing = run_main("test", "--config", lstm, *TINY_DATA, *CSV_ONLY, "--ckpt_path=best", cwd=in_tmp)
    assert last_line(nothing).startswith(
        "error: --ckpt_path best: no run of this model config and training data with a best checkpoint"
    )
    cli = ExperimentCLI(args=["--config", str(run / "config.yaml"), "--trainer.logger=false"], run=False)
    assert type(cli.model.net).__name__ == "DilatedCNN"


def test_another_nets_checkpoint_names_both_nets(tmp_path):
    """Trial 32: an LSTM config given a CNN's checkpoint listed the tensors that differ and "another vocabulary,
    data or net options", without naming the nets; its run's config.yaml says which net it built."""
    import yaml

    from archbench.errors import ConfigError
    from experiments.resume import saved_net
    from lit_models import DilatedCNN, PredictionTask, RecurrentNet

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    config = {"model": {"class_path": "lit_models.PredictionTask", "init_args": {"net": {"class_path":
              "lit_models.DilatedCNN", "init_args": {"channels": 4}}}}}  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    # the run folder the checkpoint lies in, whatever its saved run_dir (relative to where it was trained)
    assert (
        saved_net({"run_dir": "runs/dna/version_0"}, run / "checkpoints" / "last.ckpt")
        == "lit_models.DilatedCNN"
    )
    checkpoint = {"run_dir": str(run)}  # moved out of its folder: the run folder it names, where absolute
    assert saved_net(checkpoint, tmp_path / "moved.ckpt") == "lit_models.DilatedCNN"
    assert saved_net({}, tmp_path / "moved.ckpt") is None
    state = PredictionTask(DilatedCNN(4, 1, channels=4, num_blocks=1)).state_dict()
    lstm = PredictionTask(RecurrentNet(4, 1, cell="lstm", hidden_size=8))
    with pytest.raises(ConfigError, match=r"^x.ckpt does not fit the model .*: it was trained with another vocabulary, "
                       r"data or net options; its run built the net DilatedCNN, this config RecurrentNet; give the "
                       r"config it was trained with$"):  # fmt: skip
        lstm.refuse_mismatch(state, "x.ckpt", saved_net=saved_net(checkpoint, tmp_path / "moved.ckpt"))


def test_other_token_ids_are_counted_over_the_ids_both_vocabularies_have():
    """Trial 33: "30522 of their token ids mean other tokens" of a 68-character vocabulary; and a vocabulary that
    extends the other is said as such, not as "0 of them"."""
    import json
    from types import SimpleNamespace

    from lightning.pytorch.utilities.parsing import AttributeDict

    from archbench.errors import ConfigError
    from lit_models.task import _refuse_other_tokens

    def data(chars: str):
        state = {"tokenizer": json.dumps({"kind": "char", "chars": list(chars)})}
        return SimpleNamespace(hparams=AttributeDict(tokenizer="char"), state_dict=lambda: state)

    checkpoint = {"CharData": {"tokenizer": json.dumps({"kind": "char", "chars": list("abc")})}}
    saved = {"tokenizer": "char"}
    with pytest.raises(ConfigError, match=r"and 2 of the 3 ids both have mean other tokens \(id 0 is 'a' there, 'x' "
                                          r"here; 3 tokens there, 5 here\)"):  # fmt: skip
        _refuse_other_tokens("model.init_from", "a.ckpt", checkpoint, saved, data("xbyzw"))
    with pytest.raises(ConfigError, match=r"and one has tokens the other lacks \(3 tokens there, 4 here; the 3 ids "
                                          r"both have agree\)"):  # fmt: skip
        _refuse_other_tokens("model.init_from", "a.ckpt", checkpoint, saved, data("abcd"))
    _refuse_other_tokens("model.init_from", "a.ckpt", checkpoint, saved, data("abc"))  # the same: taken
