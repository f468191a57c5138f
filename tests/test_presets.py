"""Trainer presets, impossible trainer requests as one line, and mixed precision on the CPU."""

import warnings

import pytest
import torch
import yaml
from conftest import CNN, CSV_ONLY, ROOT, TINY_DATA, last_line, run_main
from lightning.pytorch.callbacks import EarlyStopping

from archbench.errors import ConfigError
from experiments.cli import ExperimentCLI

TRAINER = ROOT / "experiments" / "trainer"
PRESETS = sorted(p.name for p in TRAINER.glob("*.yaml"))


def test_every_preset_is_known():
    assert PRESETS == ["cpu.yaml", "ddp.yaml", "ddp_cpu.yaml", "fsdp.yaml", "gpu.yaml", "multinode.yaml"]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_builds_a_trainer_or_says_what_is_missing(preset, in_tmp):
    args = ["--config", CNN, "--trainer", str(TRAINER / preset), *TINY_DATA, *CSV_ONLY]
    preset_config = yaml.safe_load((TRAINER / preset).read_text())
    if preset_config["accelerator"] == "gpu" and not torch.cuda.is_available():
        with pytest.raises(
            ConfigError, match=r"^trainer: .*\(this machine: accelerator cpu \(\d+ cores\), no CUDA GPU"
        ):
            ExperimentCLI(args=args, run=False)
        return
    cli = ExperimentCLI(args=args, run=False)
    assert cli.trainer.num_nodes == preset_config["num_nodes"]
    if preset == "ddp_cpu.yaml":
        assert cli.trainer.num_devices == 2 and type(cli.trainer.strategy).__name__ == "DDPStrategy"


def test_more_cpu_processes_than_cores_are_said(in_tmp):
    """Trial 32: 3 DDP processes started on 2 cores without a word (allowed: a test of DDP on a laptop)."""
    import os

    cores = len(os.sched_getaffinity(0))
    args = ["--config", CNN, *TINY_DATA, *CSV_ONLY, "--trainer.accelerator=cpu", "--trainer.strategy=ddp"]
    with pytest.warns(
        UserWarning, match=rf"^trainer.devices: {cores + 1} CPU processes on {cores} cores: they share "
    ):
        ExperimentCLI(args=[*args, f"--trainer.devices={cores + 1}"], run=False)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        ExperimentCLI(args=[*args, f"--trainer.devices={cores}"], run=False)
    assert not [w for w in said if "CPU processes on" in str(w.message)]


@pytest.mark.parametrize(
    "option, expected",
    [
        ("--trainer.devices=0", "trainer: `Trainer(devices='0')` value is not a valid input"),
        ("--trainer.strategy=nope", "trainer: You selected an invalid strategy name: `strategy='nope'`"),
        ("--trainer.accelerator=tpu", "trainer: Requirement 'torch_xla"),
    ],
)  # fmt: skip
def test_impossible_trainer_settings_name_the_setting(option, expected, in_tmp):
    with pytest.raises(ConfigError) as err:
        ExperimentCLI(args=["--config", CNN, *TINY_DATA, *CSV_ONLY, option], run=False)
    assert str(err.value).startswith(expected) and "this machine: accelerator cpu" in str(err.value)


def test_early_stopping_is_one_setting_and_a_second_one_is_refused_in_one_line(in_tmp):
    cli = ExperimentCLI(
        args=["--config", CNN, *TINY_DATA, *CSV_ONLY, "--early_stopping.patience=7"], run=False
    )
    (stopping,) = [c for c in cli.trainer.callbacks if isinstance(c, EarlyStopping)]
    assert (stopping.monitor, stopping.mode, stopping.patience) == ("val/loss", "min", 7)
    second = [
        "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
        "--trainer.callbacks.monitor=val/loss",
    ]
    with pytest.raises(ConfigError) as err:
        ExperimentCLI(args=["--config", CNN, *TINY_DATA, *CSV_ONLY, *second], run=False)
    assert str(err.value).startswith(
        "trainer.callbacks: two EarlyStopping callbacks would keep the same state"
    )
    assert "--early_stopping.patience" in str(err.value)


@pytest.mark.parametrize(
    "option, expected",
    [
        ("--trainer.precision=64", "error: trainer.precision: 64 is not one of 32-true, 32, bf16-mixed, 16-mixed"),
        ("--trainer.no_such_key=1", "error: unrecognized arguments: --trainer.no_such_key=1"),
        # trial 32: Lightning ran bf16-mixed instead, and the run's config and W&B run said 16-mixed
        ("--trainer.precision=16-mixed", "error: trainer.precision: 16-mixed (float16 autocast) needs a GPU, and this "
                                         "run is on the CPU: give bf16-mixed (or 32) (this machine: accelerator cpu ("),
    ],
)  # fmt: skip
def test_impossible_requests_are_one_clear_line(option, expected, in_tmp):
    # on the CPU, asked for: 16-mixed is refused there on any machine, one with a GPU too
    result = run_main(
        "fit", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--trainer.accelerator=cpu", option, cwd=in_tmp
    )
    assert result.returncode == 2
    assert last_line(result).startswith(expected), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (in_tmp / "lightning_logs").exists()


@pytest.mark.parametrize("model", ["rnn", "gru", "lstm", "transformer", "cnn"])
def test_bf16_mixed_on_cpu_trains_each_sequence_architecture(model, tmp_path):
    args = ["--config", str(ROOT / "experiments" / "dna" / f"{model}.yaml"), *TINY_DATA, *CSV_ONLY]
    args += [f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.precision=bf16-mixed"]
    args += ["--trainer.max_steps=3", "--trainer.limit_val_batches=1", "--trainer.log_every_n_steps=1"]
    cli = ExperimentCLI(args=args, run=False)
    before = [p.detach().clone() for p in cli.model.parameters()]
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 3 and torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert all(p.dtype == torch.float32 for p in cli.model.parameters())  # mixed: fp32 weights, bf16 compute
    assert any(not torch.equal(a, b) for a, b in zip(before, cli.model.parameters(), strict=True))
