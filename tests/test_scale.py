"""Scale and survive: trainer presets, impossible requests, resume after SIGKILL, atomic checkpoints, non-finite
losses, reproducibility, global batch size, exact distributed validation, two "nodes" under torchrun."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, TINY_DATA, run_module

from archbench.errors import ConfigError, DataError, NonFiniteLossError
from experiments.cli import ExperimentCLI

TRAINER = ROOT / "experiments" / "trainer"
CNN = str(ROOT / "experiments" / "dna" / "cnn.yaml")
PRESETS = sorted(p.name for p in TRAINER.glob("*.yaml"))
CSV_ONLY = [
    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    "--trainer.logger.init_args.save_dir=.",
    "--trainer.enable_progress_bar=false",
]


def _last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


# --- presets and impossible requests -----------------------------------------------------------------------


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


@pytest.mark.parametrize(
    "option, expected",
    [
        ("--trainer.precision=64", "error: trainer.precision: 64 is not one of 32-true, 32, bf16-mixed, 16-mixed"),
        ("--trainer.no_such_key=1", "error: unrecognized arguments: --trainer.no_such_key=1"),
    ],
)  # fmt: skip
def test_impossible_requests_are_one_clear_line(option, expected, in_tmp):
    result = run_module("fit", "--config", CNN, *TINY_DATA, *CSV_ONLY, option, cwd=in_tmp)
    assert result.returncode == 2
    assert _last_line(result).startswith(expected), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (in_tmp / "lightning_logs").exists()


# --- resume ---------------------------------------------------------------------------------------------------

EVERY_STEP = {
    "trainer": {
        "callbacks": [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"every_n_train_steps": 1, "save_last": True, "save_top_k": 0},
            }
        ]
    }
}
RESUMABLE = [
    "--config",
    CNN,
    *TINY_DATA,
    "--data.simulation.n_train=160",
    "--model.net.init_args.dropout=0.2",  # dropout draws from the RNG: its state must be restored too
    "--trainer.max_epochs=3",
    "--trainer.deterministic=true",
    "--trainer.enable_progress_bar=false",
]


def _fit(cwd, *extra, callbacks=None):
    config = json.loads(json.dumps(EVERY_STEP))
    config["trainer"]["callbacks"] += callbacks or []
    return run_module("fit", *RESUMABLE, "--config", yaml.safe_dump(config), *extra, cwd=cwd)


def _last(folder):
    """The newest last*.ckpt (a resumed run may write last-v1.ckpt beside the one it resumed)."""
    return max(folder.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)


def _weights(folder) -> dict:
    return torch.load(_last(folder), weights_only=True)["state_dict"]


def _wandb_ids(folder) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[-1] for p in folder.rglob("offline-run-*"))


def test_sigkill_at_a_random_step_then_resume_reaches_the_same_weights(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    step = random.randint(2, 28)  # 10 steps per epoch, 3 epochs: usually mid-epoch
    result = _fit(whole)
    assert result.returncode == 0, result.stderr[-3000:]
    result = _fit(killed, callbacks=[{"class_path": "faults.KillAt", "init_args": {"step": step}}])
    assert result.returncode == -signal.SIGKILL, f"step {step}: {result.stderr[-2000:]}"
    saved = torch.load(next(killed.rglob("last.ckpt")), weights_only=True)
    assert saved["global_step"] == step
    result = _fit(killed, "--ckpt_path=last")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from runs/dna/lightning_logs/version_0/checkpoints/last.ckpt" in result.stdout
    assert "dataloader is not resumable" not in result.stderr
    assert len(list((killed / "runs" / "dna" / "lightning_logs").iterdir())) == 1  # the same run folder
    ours, reference = _weights(killed), _weights(whole)
    assert torch.load(_last(killed), weights_only=True)["global_step"] == 30
    different = [k for k in reference if not torch.equal(reference[k], ours[k])]
    assert not different, f"killed at step {step}: {different}"
    ids = _wandb_ids(killed)
    assert len(ids) == 2 and ids[0] == ids[1], ids  # the resumed W&B run has the same id


def test_resume_last_starts_fresh_without_a_run_and_never_takes_another_models_run(in_tmp):
    first = run_module(
        "fit",
        "--config",
        CNN,
        *TINY_DATA,
        *CSV_ONLY,
        "--trainer.max_epochs=1",
        "--ckpt_path=last",
        cwd=in_tmp,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert "resuming" not in first.stdout
    lstm = str(ROOT / "experiments" / "dna" / "lstm.yaml")
    other = run_module(
        "fit",
        "--config",
        lstm,
        *TINY_DATA,
        *CSV_ONLY,
        "--trainer.max_epochs=1",
        "--ckpt_path=last",
        cwd=in_tmp,
    )
    assert other.returncode == 0, other.stderr[-3000:]
    assert "resuming" not in other.stdout
    assert sorted(p.name for p in (in_tmp / "lightning_logs").iterdir()) == ["version_0", "version_1"]


def test_a_kill_while_a_checkpoint_is_written_leaves_the_previous_one_whole(tmp_path):
    path = tmp_path / "last.ckpt"
    script = f"""
import sys, torch
from experiments.resume import AtomicCheckpointIO
io = AtomicCheckpointIO()
io.save_checkpoint({{"step": 0, "w": torch.zeros(10)}}, {str(path)!r})
big = torch.randn(48_000_000)  # ~190 MB: the write takes a while
for step in range(1, 1000):
    print("writing", step, flush=True)
    io.save_checkpoint({{"step": step, "w": big}}, {str(path)!r})
"""
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout.readline().startswith("writing 1")
    time.sleep(random.uniform(0.0, 0.3))
    child.send_signal(signal.SIGKILL)
    child.wait()
    loaded = torch.load(path, weights_only=True)  # whole: either the first or a complete later one
    assert loaded["step"] == 0 or loaded["w"].numel() == 48_000_000
    assert not path.with_name("last.ckpt.tmp").exists()


def test_compare_rerun_keeps_finished_runs_and_resumes_unfinished(tmp_path, monkeypatch):
    from experiments.compare import main as compare

    monkeypatch.chdir(tmp_path)
    spec = {
        "name": "resume",
        "seeds": 1,
        "out": str(tmp_path / "out"),
        "metric": "test/pearson",
        "models": {"CNN": CNN},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(spec))
    args = [
        "--config",
        str(tmp_path / "c.yaml"),
        *TINY_DATA,
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
    ]
    compare(args)
    run = tmp_path / "out" / "runs" / "CNN-seed0"
    first = json.loads((run / "result.json").read_text())
    stamp = (run / "checkpoints" / "last.ckpt").stat().st_mtime
    compare(args)  # finished: not trained again
    assert (run / "checkpoints" / "last.ckpt").stat().st_mtime == stamp
    assert json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]["test"] == first["test"]
    (run / "result.json").unlink()  # as if killed after its last checkpoint: resumed, not restarted
    compare(args)
    assert json.loads((run / "result.json").read_text())["test"] == pytest.approx(first["test"])
    with pytest.raises(Exception, match="this run was made with other settings"):
        compare([*args, "--model.optimizer.lr=0.1"])


# --- non-finite losses, reproducibility, batch size ------------------------------------------------------------


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
    result = run_module(
        "fit", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--config", yaml.safe_dump(nan), cwd=in_tmp
    )
    assert result.returncode == 2
    assert _last_line(result).startswith("error: training loss is nan at step 2 (epoch 0, batch 2)")


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


# --- distributed ------------------------------------------------------------------------------------------------


@pytest.mark.ddp
def test_two_process_validation_equals_one_process_with_one_wandb_run(in_tmp):
    fit = run_module("fit", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--trainer.max_epochs=1", cwd=in_tmp)
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = next(in_tmp.rglob("last.ckpt"))
    runs = {}
    for devices in (1, 2):
        out = in_tmp / f"d{devices}"
        loggers = [
            {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(out)}},
            {"class_path": "experiments.loggers.AutoWandbLogger", "init_args": {"save_dir": str(out)}},
        ]
        config = yaml.safe_dump({"trainer": {"logger": loggers}})
        result = run_module(
            "validate", "--config", CNN, *TINY_DATA, "--config", config, f"--ckpt_path={ckpt}",
            "--trainer", str(TRAINER / "ddp_cpu.yaml"), f"--trainer.devices={devices}",
            "--trainer.enable_progress_bar=false", cwd=in_tmp,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        (metrics,) = list(out.rglob("metrics.csv"))  # one results file per logical run
        rows = [r for r in metrics.read_text().splitlines()[1:] if r.strip()]
        header = metrics.read_text().splitlines()[0].split(",")
        runs[devices] = {
            h: float(v)
            for h, v in zip(header, rows[-1].split(","), strict=True)
            if h.startswith("val/") and v
        }
        assert len(list(out.rglob("offline-run-*"))) == 1  # one W&B run, from rank 0
    assert set(runs[1]) >= {"val/pearson", "val/loss"}
    assert runs[2] == pytest.approx(runs[1], abs=1e-6)  # 24 validation sequences, each seen once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
def test_two_nodes_on_localhost_under_torchrun_agree(tmp_path):
    common = ["--config", CNN, *TINY_DATA, "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
              "--trainer", str(TRAINER / "ddp_cpu.yaml")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    env.pop("WANDB_SERVICE", None)
    port = _free_port()
    nodes = []
    for rank in (0, 1):
        digest = {"class_path": "faults.WeightsDigest", "init_args": {"folder": str(tmp_path / "nodes")}}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={rank}",
               "--nproc-per-node=1", "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "experiments",
               "fit", *common, "--trainer.devices=1", "--trainer.num_nodes=2",
               "--config", yaml.safe_dump({"trainer": {"callbacks+": [digest]}})]  # fmt: skip
        nodes.append(
            subprocess.Popen(
                cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = [n.communicate(timeout=300) for n in nodes]
    for n, (_, err) in zip(nodes, outputs, strict=True):
        assert n.returncode == 0, err[-3000:]
    digests = {p.name: p.read_text() for p in (tmp_path / "nodes").iterdir()}
    assert set(digests) == {"rank0.txt", "rank1.txt"} and digests["rank0.txt"] == digests["rank1.txt"]
    # the same world of 2 processes on one node gives the same weights
    digest = {"class_path": "faults.WeightsDigest", "init_args": {"folder": str(tmp_path / "one_node")}}
    one = run_module(
        "fit", *common, "--config", yaml.safe_dump({"trainer": {"callbacks+": [digest]}}), cwd=tmp_path
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert (tmp_path / "one_node" / "rank0.txt").read_text() == digests["rank0.txt"]


# --- precision and safety -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["rnn", "gru", "lstm", "transformer", "cnn"])
def test_bf16_mixed_on_cpu_trains_each_sequence_architecture(model, tmp_path):
    args = ["--config", str(ROOT / "experiments" / "dna" / f"{model}.yaml"), *TINY_DATA, *CSV_ONLY]
    args += [f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.precision=bf16-mixed"]
    cli = ExperimentCLI(args=[*args, "--trainer.max_steps=3", "--trainer.limit_val_batches=1"], run=False)
    before = [p.detach().clone() for p in cli.model.parameters()]
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 3 and torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert all(p.dtype == torch.float32 for p in cli.model.parameters())  # mixed: fp32 weights, bf16 compute
    assert any(not torch.equal(a, b) for a, b in zip(before, cli.model.parameters(), strict=True))


def test_a_wandb_api_key_never_lands_in_run_files(in_tmp):
    secret = "sk-archbench-test-" + "7f3a9c" * 6
    result = run_module(
        "fit", "--config", CNN, *TINY_DATA, "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
        cwd=in_tmp, env={"WANDB_API_KEY": secret, "WANDB_MODE": "offline"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    files = [p for p in in_tmp.rglob("*") if p.is_file()]
    assert any(p.suffix == ".ckpt" for p in files) and any(p.name == "config.yaml" for p in files)
    assert any(p.suffix == ".wandb" for p in files)
    leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
    assert not leaked and secret not in result.stdout + result.stderr


def test_nothing_trusts_remote_code_by_default():
    sources = [*ROOT.glob("datamodules/*.py"), *ROOT.glob("lit_models/*.py"), *ROOT.glob("experiments/*.py")]
    assert sources and not [str(p) for p in sources if "trust_remote_code=True" in p.read_text()]


class Pickled:
    """Not a tensor: a checkpoint holding it needs full unpickling, which the CLI refuses."""


def test_each_kind_of_bad_checkpoint_is_named_in_one_line(in_tmp):
    """Missing, a folder, not a checkpoint, truncated, pickled objects, a torch file that is no Lightning
    checkpoint: each a ConfigError with its own reason, before Lightning reads the file; the command prints it
    as one line with exit status 2."""
    fit = run_module("fit", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--trainer.max_epochs=1", cwd=in_tmp)
    assert fit.returncode == 0, fit.stderr[-3000:]
    good = next(in_tmp.rglob("last.ckpt"))
    checkpoint = torch.load(good, weights_only=True)
    torch.save({**checkpoint, "extra": Pickled()}, in_tmp / "unsafe.ckpt")
    (in_tmp / "truncated.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (in_tmp / "notes.ckpt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.ones(2)}, in_tmp / "plain.pt")
    (in_tmp / "folder.ckpt").mkdir()
    cases = {
        "missing.ckpt": "ckpt_path: file 'missing.ckpt' not found",
        "folder.ckpt": "ckpt_path: 'folder.ckpt' is a directory, expected a checkpoint file",
        "notes.ckpt": "ckpt_path: 'notes.ckpt' is not a checkpoint or is damaged",
        "truncated.ckpt": "ckpt_path: 'truncated.ckpt' is not a checkpoint or is damaged (truncated",
        "unsafe.ckpt": "ckpt_path: 'unsafe.ckpt' refused: it holds more than tensors and plain values",
        "plain.pt": "ckpt_path: 'plain.pt' is a torch file but not a Lightning checkpoint",
    }
    for name, expected in cases.items():
        with pytest.raises(ConfigError) as caught:
            ExperimentCLI(args=["validate", "--config", CNN, *TINY_DATA, *CSV_ONLY, f"--ckpt_path={name}"])
        assert str(caught.value).startswith(expected), (name, str(caught.value))
    result = run_module(
        "validate", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--ckpt_path=truncated.ckpt", cwd=in_tmp
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert _last_line(result).startswith("error: " + cases["truncated.ckpt"])


# --- data larger than memory ---------------------------------------------------------------------------------

STREAM_CHILD = """
import resource, sys
import numpy as np
from datamodules.dna import DNADataModule

def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

dm = DNADataModule(train_path=sys.argv[1], val_fraction=0.05, test_fraction=0.05, batch_size=4096)
limit = vm("VmData") + int(sys.argv[2])  # private memory may grow this much: less than a third of the data
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
dm.setup("fit")
bases, peak = 0, 0
for batch in dm.train_dataloader():
    bases += int(batch["lengths"].sum())
    peak = max(peak, vm("VmData"))
print(bases, peak <= limit, vm("RssAnon"))
"""


def test_data_several_times_larger_than_the_memory_limit_trains_from_disk(tmp_path):
    from datamodules.dna_io import open_encoded

    n, length, headroom = 1_000_000, 250, 64 * 2**20  # 250 MB of bases, 64 MB of room for everything else
    folder = tmp_path / "big"
    folder.mkdir()
    codes = np.lib.format.open_memmap(folder / "codes.npy", mode="w+", dtype=np.uint8, shape=(n * length,))
    rng = np.random.default_rng(0)
    for start in range(0, n * length, 2**24):
        stop = min(start + 2**24, n * length)
        codes[start:stop] = rng.integers(0, 4, stop - start, dtype=np.uint8)
    codes.flush()
    np.save(folder / "offsets.npy", np.arange(n + 1, dtype=np.int64) * length)
    np.save(folder / "labels.npy", rng.normal(size=n).astype(np.float32))
    del codes
    assert open_encoded(folder).lengths.sum() == n * length > 3 * headroom
    child = subprocess.run(
        [sys.executable, "-c", STREAM_CHILD, str(folder), str(headroom)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    bases, under_limit, _ = child.stdout.split()
    assert int(bases) == round(n * 0.9) * length  # every training sequence was read, under the limit
    assert under_limit == "True"


@pytest.mark.parametrize("suffix", [".txt", ".tsv.gz", ".parquet"])
def test_chunked_encoding_equals_reading_whole_and_names_the_right_line(tmp_path, suffix):
    import pandas as pd

    from datamodules.dna_io import encode_file, open_encoded, read_dna

    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGTN"), rng.integers(5, 40))) for _ in range(1000)]
    labels = rng.normal(size=1000).round(4)
    path = tmp_path / f"seqs{suffix}"
    frame = pd.DataFrame({"sequence": seqs, "label": labels})
    if suffix == ".txt":
        path.write_text(
            "".join(
                f"{s} {y}\n" + ("\n" if i % 97 == 0 else "")
                for i, (s, y) in enumerate(zip(seqs, labels, strict=True))
            )
        )
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t", index=False, compression="gzip")
    assert encode_file(path, tmp_path / "enc", chunk_records=64) == 1000
    whole, chunked = read_dna(path), open_encoded(tmp_path / "enc")
    assert chunked.to_strings() == whole.to_strings() == [s for s in seqs]
    np.testing.assert_array_equal(chunked.labels, whole.labels)
    # a bad base far into the file: the same message, line and all, as reading it whole
    frame.loc[700, "sequence"] = "ACGU"
    bad = tmp_path / f"bad{suffix}"
    if suffix == ".txt":
        lines = path.read_text().splitlines(keepends=True)
        target = next(i for i, line in enumerate(lines) if line.startswith(seqs[700] + " "))
        lines[target] = f"ACGU {labels[700]}\n"
        bad.write_text("".join(lines))
    elif suffix == ".parquet":
        frame.to_parquet(bad)
    else:
        frame.to_csv(bad, sep="\t", index=False, compression="gzip")
    with pytest.raises(DataError) as whole_error:
        read_dna(bad)
    with pytest.raises(DataError) as chunked_error:
        encode_file(bad, tmp_path / "enc_bad", chunk_records=64)
    assert str(chunked_error.value) == str(whole_error.value) and "base 4 is 'U'" in str(whole_error.value)
    assert not list((tmp_path / "enc_bad").iterdir())  # nothing half-written


ENCODE_CHILD = """
import resource, sys
from datamodules.dna_io import encode_file

def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

limit = vm("VmData") + int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
print(encode_file(sys.argv[1], sys.argv[2], chunk_records=10_000))
"""


def test_a_file_several_times_larger_than_the_memory_limit_encodes_in_chunks(tmp_path):
    n, length, headroom = 800_000, 250, 64 * 2**20  # a 200 MB text file, 64 MB of room
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    with open(tmp_path / "big.txt", "wb") as f:
        for _ in range(n // 50_000):
            rows = np.full((50_000, length + 4), ord(" "), dtype=np.uint8)
            rows[:, :length] = letters[rng.integers(0, 4, (50_000, length))]
            rows[:, length + 1 : length + 3] = np.frombuffer(b"-1", dtype=np.uint8)
            rows[:, -1] = ord("\n")
            f.write(rows.tobytes())
    assert (tmp_path / "big.txt").stat().st_size > 3 * headroom
    child = subprocess.run(
        [sys.executable, "-c", ENCODE_CHILD, str(tmp_path / "big.txt"), str(tmp_path / "enc"), str(headroom)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.split() == [str(n)]


def test_encode_command_round_trip(tmp_path):
    from datamodules.dna_io import read_dna

    (tmp_path / "seqs.txt").write_text("ACGT 1.5\nGGNNA -2\nTTT 0\n")
    result = run_module("data", "encode", "--input", "seqs.txt", "--out", "enc", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    encoded = read_dna(tmp_path / "enc")
    assert isinstance(encoded.codes, np.memmap)
    assert encoded.to_strings() == ["ACGT", "GGNNA", "TTT"] and encoded.labels.tolist() == [1.5, -2.0, 0.0]
    part = encoded.subset(np.array([2, 0]))
    assert part.to_strings() == ["TTT", "ACGT"] and part.labels.tolist() == [0.0, 1.5]
    assert part.subset(np.array([1])).to_strings() == ["ACGT"]
    # the command converts through the chunked encoder: its options reach it
    (tmp_path / "bad.txt").write_text("ACGT 1.5\nACGU 2\nTTT 0\n")
    result = run_module(
        "data", "encode", "--input", "bad.txt", "--out", "enc2", "--on-bad-line", "skip", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_dna(tmp_path / "enc2").to_strings() == ["ACGT", "TTT"]


def test_a_damaged_encoded_folder_names_the_file(tmp_path):
    from datamodules.dna_io import encode_file, read_dna

    (tmp_path / "seqs.txt").write_text("ACGT 1\nGG 2\nT 3\n")
    encode_file(tmp_path / "seqs.txt", tmp_path / "enc")
    np.save(tmp_path / "enc" / "labels.npy", np.zeros(2, dtype=np.float32))
    with pytest.raises(DataError, match=r"enc: labels.npy: 2 labels for 3 sequences"):
        read_dna(tmp_path / "enc")
    (tmp_path / "enc" / "offsets.npy").unlink()
    with pytest.raises(DataError, match=r"enc: not an encoded DNA folder \(missing offsets.npy\)"):
        read_dna(tmp_path / "enc")


TEXT_CHILD = """
import os, resource, sys
from datamodules.text import TextClassificationDataModule

def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

dm = TextClassificationDataModule(train_path=sys.argv[1], tokenizer=sys.argv[2], max_length=64, batch_size=4096)
dm.tokenizer  # loaded before the limit, as the CLI does when it links the vocabulary size
limit = vm("VmData") + int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
dm.prepare_data()
dm.setup("fit")
n = tokens = 0
for batch in dm.train_dataloader():
    n, tokens = n + len(batch["y"]), tokens + int(batch["lengths"].sum())
print(n, tokens)
"""


@pytest.mark.slow
def test_text_larger_than_the_memory_limit_tokenizes_and_trains_from_disk(tmp_path):
    import csv

    from transformers import PreTrainedTokenizerFast

    from datamodules.text import train_tokenizer

    # 700,000 texts, 127 MB of CSV, in 64 MB of room. Not more: datasets' `select` (the held-out split) turns
    # its indices into a Python list, about 36 bytes per row while it runs, which the room must hold.
    n, words, headroom = 700_000, 36, 64 * 2**20
    vocabulary = [
        "film",
        "great",
        "boring",
        "actor",
        "plot",
        "story",
        "the",
        "a",
        "was",
        "not",
        "very",
        "and",
    ]
    vocabulary += ["scene", "music", "ending"]
    rng = np.random.default_rng(0)
    with open(tmp_path / "big.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(n // 100_000):
            picks = rng.integers(0, len(vocabulary), (100_000, words))
            writer.writerows(
                [" ".join(vocabulary[j] for j in row), "pos" if row[0] % 2 else "neg"] for row in picks
            )
    assert (tmp_path / "big.csv").stat().st_size > 1.9 * headroom
    backend = train_tokenizer("wordpiece", [vocabulary], vocab_size=120)
    special = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
    PreTrainedTokenizerFast(tokenizer_object=backend, **special).save_pretrained(tmp_path / "tokenizer")
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            TEXT_CHILD,
            str(tmp_path / "big.csv"),
            str(tmp_path / "tokenizer"),
            str(headroom),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ARCHBENCH_CACHE": str(tmp_path / "cache")},
        timeout=900,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    train = n - 2 * round(0.1 * n)  # 10% validation, 10% test held out
    assert child.stdout.split() == [str(train), str(train * (words + 2))]  # every text read: [CLS] w... [SEP]
