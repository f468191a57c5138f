import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ["WANDB_MODE"] = "offline"  # tests never reach W&B; offline runs are read back from disk
os.environ["WANDB_SILENT"] = "true"
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Offline as the machines are: a hub name fails at once with a clear message instead of retrying the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# Tokenized-text caches of this session only (never the user's ~/.cache).
os.environ["ARCHBENCH_CACHE"] = tempfile.mkdtemp(prefix="archbench-test-cache-")
atexit.register(shutil.rmtree, os.environ["ARCHBENCH_CACHE"], ignore_errors=True)  # gone with the session

CNN = str(ROOT / "experiments" / "dna" / "cnn.yaml")
CSV_ONLY = [  # CSV logs in the working folder, no W&B run, no progress bar
    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    "--trainer.logger.init_args.save_dir=.",
    "--trainer.enable_progress_bar=false",
]

# A tiny built-in benchmark for every test that trains.
TINY_DATA = [
    "--data.simulation.n_train=64",
    "--data.simulation.n_val=24",
    "--data.simulation.n_test=21",
    "--data.simulation.seq_len=60",
    "--data.batch_size=16",
]


@pytest.fixture(autouse=True)
def _no_disabled_wandb_left_behind():
    """W&B's process-wide settings are read from the environment once: a test that ran W&B with WANDB_MODE
    disabled left every later run in this pytest process disabled too (no offline files to read back), which a
    user's process, whose mode never changes, does not meet. Torn down after such a test."""
    yield
    setup = sys.modules.get("wandb.sdk.wandb_setup")
    single = getattr(setup, "_singleton", None)
    loaded = single.settings_if_loaded if single is not None else None
    if loaded is not None and loaded.mode == "disabled":
        setup.teardown()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder, so whatever a command writes is visible (and nothing lands in the repo)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def last_line(result) -> str:
    """The last line a command printed to stderr: where its one-line error is."""
    return result.stderr.strip().splitlines()[-1]


def run_module(*args, cwd, env=None, timeout=300):
    """``python -m experiments ...`` as a user runs it; returns the CompletedProcess."""
    import subprocess

    # WANDB_SERVICE is the socket of the W&B service an in-process test started: a child that inherits it
    # logs through that service instead of its own, unlike a command a user starts from a shell.
    inherited = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    full_env = {**inherited, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "experiments", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_main(*args, cwd):
    """``archbench ...`` run in this process (the suite starts no interpreter, importing torch and Lightning
    again, for commands that need no process of their own); returns what ``run_module`` returns."""
    import contextlib
    import io
    import subprocess

    import wandb

    from experiments.__main__ import main

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exit_:  # --help, --print_config
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        wandb.finish()  # as the process would end its W&B run
        os.chdir(here)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def tiny_compare(tmp_path, name: str, data_config, models: dict, seeds: int, overrides: list[str]) -> dict:
    """Run ``compare`` in ``tmp_path`` on a one-epoch comparison file over ``models`` (name -> config file);
    ``overrides`` are the per-run options (tiny data). Returns results.json."""
    import json

    import yaml

    from experiments.compare import main as compare

    spec = {
        "name": name,
        "seeds": seeds,
        "out": "out",
        "metric": "test/acc",
        "config": [*([str(data_config)] if data_config else []), {"trainer": {"max_epochs": 1}}],
        "throughput_window": 2,
        "models": {k: str(v) for k, v in models.items()},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec))
    runs_options = [
        a for a in overrides if not a.startswith(("--config", "--trainer.logger")) and "yaml" not in a
    ]
    compare(
        [
            "--config",
            str(tmp_path / "tiny.yaml"),
            *runs_options,
            "--trainer.limit_train_batches=2",
            "--trainer.log_every_n_steps=1",
        ]
    )
    return json.loads((tmp_path / "out" / "results.json").read_text())


def assert_same_step(first, second, batch: dict, seed: int | None = None) -> None:
    """Two tasks with the same weights (one compiled, say) give one training batch the same loss and gradients
    (``seed``: the same random draws for both, such as a masked LM's masks)."""
    import torch

    losses = []
    for task in (first, second):
        if seed is not None:
            torch.manual_seed(seed)
        loss, _ = task.compute_loss(batch)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], atol=1e-6, rtol=1e-5)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)
