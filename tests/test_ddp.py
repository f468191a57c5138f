"""Real torch.distributed on the CPU: 2 gloo processes launched by Lightning, no mocks."""

import csv

import pytest
from conftest import ROOT, TINY_DATA, run_module

from experiments.cli import ExperimentCLI

CNN = str(ROOT / "experiments" / "dna" / "cnn.yaml")


def _test_metrics(folder) -> dict:
    files = list(folder.rglob("metrics.csv"))
    assert len(files) == 1, files  # one results file per logical run, written by rank 0 only
    with open(files[0], newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("test/pearson")]
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("test/")}


@pytest.mark.ddp
def test_two_process_ddp_test_metrics_equal_one_process(in_tmp):
    # 21 test sequences do not divide by 2: a padding sampler would count one twice.
    ExperimentCLI(
        args=[
            "fit",
            "--config",
            CNN,
            *TINY_DATA,
            "--trainer.max_epochs=1",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.init_args.save_dir=fit",
            "--trainer.enable_progress_bar=false",
        ]
    )
    ckpt = next((in_tmp / "fit").rglob("last.ckpt"))
    common = [
        "test",
        "--config",
        CNN,
        *TINY_DATA,
        f"--ckpt_path={ckpt}",
        "--trainer.accelerator=cpu",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        "--trainer.enable_progress_bar=false",
    ]
    one = run_module(*common, "--trainer.devices=1", "--trainer.logger.init_args.save_dir=one", cwd=in_tmp)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_module(
        *common,
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        "--trainer.logger.init_args.save_dir=two",
        cwd=in_tmp,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert "world_size=2" in two.stderr + two.stdout or "distributed_backend=gloo" in two.stderr + two.stdout
    single, ddp = _test_metrics(in_tmp / "one"), _test_metrics(in_tmp / "two")
    assert set(single) == {"test/pearson", "test/spearman", "test/r2", "test/mse"}
    assert ddp == pytest.approx(single, abs=1e-6)


@pytest.mark.ddp
def test_text_under_two_process_ddp_tokenizes_once_and_tests_each_text_once(in_tmp):
    """A fresh token cache built under DDP (prepare_data on rank 0, setup on both), then test metrics of
    2 processes equal 1 process on 20 test texts."""
    from text_data import TEXT, text_args

    cache = in_tmp / "cache"
    args = [*text_args(in_tmp, TEXT / "lstm.yaml"), "--trainer.accelerator=cpu", "--trainer.max_epochs=1"]
    env = {"ARCHBENCH_CACHE": str(cache)}
    fit = run_module("fit", *args, "--trainer.devices=2", "--trainer.strategy=ddp", cwd=in_tmp, env=env)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert len(list((cache / "text" / "tokenized").glob("*/meta.json"))) == 1
    ckpt = next((in_tmp / "logs").rglob("last.ckpt"))
    results = {}
    for devices in (1, 2):
        extra = ["--trainer.strategy=ddp"] if devices == 2 else []
        logs = f"--trainer.logger.init_args.save_dir=test{devices}"
        done = run_module(
            "test",
            *args,
            logs,
            f"--ckpt_path={ckpt}",
            f"--trainer.devices={devices}",
            *extra,
            cwd=in_tmp,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        files = list((in_tmp / f"test{devices}").rglob("metrics.csv"))
        assert len(files) == 1
        with open(files[0], newline="") as f:
            row = [r for r in csv.DictReader(f) if r.get("test/acc")][-1]
        results[devices] = {k: float(v) for k, v in row.items() if k.startswith("test/")}
    assert set(results[1]) == {"test/acc", "test/f1", "test/ece"}
    assert results[2] == pytest.approx(results[1], abs=1e-6)
