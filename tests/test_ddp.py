"""Real torch.distributed on the CPU: 2 gloo processes launched by Lightning, no mocks."""

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import CNN, CSV_ONLY, ROOT, TINY_DATA, run_module

from experiments.cli import ExperimentCLI

TRAINER = ROOT / "experiments" / "trainer"


# --- the training order under DDP ------------------------------------------------------------------------------


def _single_process_batches(args: list[str], epochs: int):
    """Per epoch, the training batches one process sees (digests of their examples), the validation examples
    (what the shards under DDP must add up to), and the first epoch's batch lengths."""
    from faults import example_digests

    cli = ExperimentCLI(args=[*args, "--trainer.logger=false"], run=False)  # seeds as the runs do
    data = cli.datamodule
    data.setup("fit")
    loader = data.train_dataloader()
    per_epoch, lengths = [], []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        batches = [data.on_after_batch_transfer(b, 0) for b in loader]
        per_epoch.append([example_digests(b) for b in batches])
        lengths = lengths or [b["lengths"].tolist() if "lengths" in b else [] for b in batches]
    val = [d for b in data.val_dataloader() for d in example_digests(data.on_after_batch_transfer(b, 0))]
    return per_epoch, val, lengths


def _ddp_args(modality: str, tmp_path) -> list[str]:
    if modality == "dna":
        return ["--config", CNN, *TINY_DATA, "--data.simulation.n_train=160"]
    if modality == "text":
        from text_data import TEXT, text_args

        return text_args(tmp_path, TEXT / "lstm.yaml", tokenizer="bpe")
    if modality == "lm":
        from lm_data import lm_args

        return ["--config", str(ROOT / "experiments" / "lm" / "gpt.yaml"), *lm_args(tmp_path / "corpus"),
                "--model.net.init_args.n_layer=1", "--model.net.init_args.n_embd=32"]  # fmt: skip
    if modality == "seq2seq":  # the budget in steps of seq2seq/base.yaml off: epochs, validated at their end
        from seq2seq_data import pair_args

        return ["--config", str(ROOT / "experiments" / "seq2seq" / "gru.yaml"), *pair_args(tmp_path / "pairs"),
                "--trainer.max_steps=-1", "--trainer.check_val_every_n_epoch=1"]  # fmt: skip
    from image_data import image_args

    return image_args(tmp_path, "mnist_cnn.yaml")


def _last_val_metrics(folder) -> dict:
    (metrics,) = list(folder.rglob("metrics.csv"))  # one results file per logical run, from rank 0
    with open(metrics, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/loss")]
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


@pytest.mark.ddp
# text, images, LM and seq2seq shard through the same samplers as DNA: slow (make test-all), to keep the default
# suite under its time budget on 2 cores
@pytest.mark.parametrize(
    "modality",
    ["dna", pytest.param("text", marks=pytest.mark.slow), pytest.param("images", marks=pytest.mark.slow),
     pytest.param("lm", marks=pytest.mark.slow), pytest.param("seq2seq", marks=pytest.mark.slow)],
)  # fmt: skip
def test_each_rank_trains_on_a_disjoint_shard_of_the_single_process_order(modality, in_tmp):
    """2 gloo processes: at step k, rank r trains on batch kW + r of the single-process order (bucketed for
    text), both epochs; a rank short of a batch takes one from the start of the order; validation sees every
    example exactly once across the ranks, and its metrics equal one process's on the same weights; one
    metrics file and one W&B run; another seed gives another order. Text: the token cache is built once."""
    args = [*_ddp_args(modality, in_tmp), "--trainer.max_epochs=2", "--trainer.val_check_interval=1.0"]
    args += ["--trainer.enable_progress_bar=false", "--trainer.num_sanity_val_steps=0"]
    loggers = [{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "logs"}},
               {"class_path": "experiments.loggers.AutoWandbLogger", "init_args": {"save_dir": "logs"}}]  # fmt: skip
    args += ["--config", yaml.safe_dump({"trainer": {"logger": loggers}})]
    record = ["--trainer.callbacks+=faults.RecordBatches", "--trainer.callbacks.folder=recorded"]
    ddp = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    cache = {"ARCHBENCH_CACHE": str(in_tmp / "cache")}
    done = run_module("fit", *args, *record, *ddp, cwd=in_tmp, env=cache)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((in_tmp / "logs").rglob("offline-run-*"))) == 1  # one W&B run, from rank 0
    if modality == "text":
        assert len(list((in_tmp / "cache" / "text" / "tokenized").glob("*/meta.json"))) == 1
    if modality == "lm":  # one token stream, and each rank's windows scored once: metrics as one process's
        assert len(list((in_tmp / "cache" / "lm" / "streams").glob("*/meta.json"))) == 1
    ranks = [json.loads((in_tmp / "recorded" / f"rank{r}.json").read_text()) for r in range(2)]
    os.environ["ARCHBENCH_CACHE"], previous = cache["ARCHBENCH_CACHE"], os.environ["ARCHBENCH_CACHE"]
    try:
        single, val, lengths = _single_process_batches(args, epochs=2)
        ckpt = next((in_tmp / "logs").rglob("last.ckpt"))
        one = ExperimentCLI(args=["validate", *args, "--trainer.logger=false", f"--ckpt_path={ckpt}"])
        other, _, _ = _single_process_batches([*args, "--seed_everything=1"], epochs=1)
    finally:
        os.environ["ARCHBENCH_CACHE"] = previous
    for epoch, batches in enumerate(single):
        steps = [[d for e, d in rank["train"] if e == epoch] for rank in ranks]
        assert len(steps[0]) == len(steps[1]) == -(-len(batches) // 2)  # the same number of steps
        for k in range(len(steps[0])):
            for r in range(2):
                assert steps[r][k] == batches[(2 * k + r) % len(batches)], (epoch, k, r)
        seen = [d for rank in ranks for e, b in rank["val"] if e == epoch for d in b]
        assert sorted(seen) == sorted(val)  # each validation example once, across the ranks
    single_metrics = {k: float(v) for k, v in one.trainer.callback_metrics.items() if k.startswith("val/")}
    assert len(single_metrics) >= 3 and _last_val_metrics(in_tmp / "logs") == pytest.approx(
        single_metrics, abs=1e-5
    )
    assert single[0] != single[1]  # epochs differ
    assert other[0] != single[0]  # another seed, another order
    if modality == "dna":  # predict: each rank its share of the rows, written as one file in input order
        predicted = run_module("predict", *args, *ddp, f"--ckpt_path={ckpt}", "--trainer.logger=false",
                               "--trainer.default_root_dir=predicted", cwd=in_tmp, env=cache)  # fmt: skip
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        (written,) = (in_tmp / "predicted").rglob("predictions*.tsv")  # one file, not one per rank
        ExperimentCLI(args=["predict", *args, f"--ckpt_path={ckpt}", "--trainer.logger=false",
                            "--trainer.default_root_dir=single"])  # fmt: skip
        (alone,) = (in_tmp / "single").rglob("predictions.tsv")
        rows = [r.split("\t") for r in written.read_text().splitlines()]
        assert written.name == "predictions.tsv" and [r[0] for r in rows[1:]] == [str(i) for i in range(21)]
        expected = [r.split("\t") for r in alone.read_text().splitlines()]
        assert rows[0] == expected[0] and len(rows) == len(expected)
        for ours, theirs in zip(rows[1:], expected[1:], strict=True):
            assert ours[:-1] == theirs[:-1] and float(ours[-1]) == pytest.approx(float(theirs[-1]), abs=1e-5)
        # one row for two processes: Lightning skips a process without batches, and rank 0 waited for its share
        # forever (or stopped on "zero length"); the second reads the row again and the file has it once
        (in_tmp / "one.txt").write_text("ACGT" * 15 + "\n")
        one_row = run_module("predict", *args, *ddp, f"--ckpt_path={ckpt}", "--trainer.logger=false",
                             "--data.predict_path=one.txt", "--trainer.default_root_dir=one", cwd=in_tmp, env=cache,
                             timeout=240)  # fmt: skip
        assert one_row.returncode == 0, one_row.stderr[-3000:]
        (written,) = (in_tmp / "one").rglob("predictions*.tsv")
        header, row = [r.split("\t")[:2] for r in written.read_text().splitlines()]
        assert header == ["index", "line"] and row == ["0", "1"]
    if modality == "text":  # the order the ranks shard is bucketed: each batch holds texts of similar length
        flat = np.random.default_rng(0).permutation([n for b in lengths for n in b])
        sizes = np.cumsum([len(b) for b in lengths])[:-1]
        random_spread = np.mean([np.ptp(b) for b in np.split(flat, sizes)])
        assert np.mean([np.ptp(b) for b in lengths]) < 0.5 * random_spread


def test_an_evaluation_split_smaller_than_the_processes_is_said_and_predict_reads_a_row_again():
    """Evaluation shards: every example once across processes. A split with fewer examples than processes would
    leave a process without batches, which Lightning stops on with its own traceback: said as the split's size
    and the device count to use. ``predict`` merges rows by index, so there the idle process reads a row again
    (the rows a process reads, as ``make_loader`` builds them for rank r of 3)."""
    from types import SimpleNamespace

    from archbench.errors import DataError
    from datamodules.sampling import make_loader

    hparams = {"batch_size": 4, "num_workers": 0}
    hparams = SimpleNamespace(**hparams, get=hparams.get)

    def rows(n: int, rank: int, predicting: bool = False, testing: bool = False) -> list[int]:
        trainer = SimpleNamespace(global_rank=rank, world_size=3, predicting=predicting, testing=testing)
        return list(make_loader(range(n), hparams, trainer, train=False).sampler)

    assert [rows(7, r) for r in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert [rows(2, r, predicting=True) for r in range(3)] == [[0], [1], [0]]
    assert [rows(5, r, predicting=True) for r in range(3)] == [[0, 3], [1, 4], [2]]  # none read twice
    with pytest.raises(DataError, match=r"the test split has 2 example\(s\), fewer than the 3 processes .*"
                       r"use at most 2 process\(es\) or a larger test split"):  # fmt: skip
        rows(2, 0, testing=True)
    with pytest.raises(DataError, match="the validation split has 1 example"):
        rows(1, 2)


# --- validation and nodes ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_script_without_a_gpu_says_what_to_set(tmp_path):
    """No GPU (an nvidia-smi that lists none) and no NPROC_PER_NODE: one line on what to set, not a silent exit."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 9\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "NODE_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "PY": sys.executable}  # fmt: skip
    env.pop("NPROC_PER_NODE", None)
    script = ROOT / "experiments" / "launch" / "torchrun.sh"
    done = subprocess.run(["bash", str(script), "--config", CNN], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "no GPU found" in done.stderr and "NPROC_PER_NODE" in done.stderr, done.stderr
    # from another working folder, its defaults are the project's files (trial 16: ./.venv/bin/python not found,
    # a bare shell error); an interpreter that is not there is said
    env = {**env, "NPROC_PER_NODE": "1", "PY": str(tmp_path / "none" / "python")}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == (
        f"torchrun.sh: no Python at {tmp_path / 'none' / 'python'}; set PY to the interpreter that has the project "
        "installed"
    )
    # a project config named from another folder is the project's; a config found nowhere is one line, before
    # torchrun starts a process (trial 22: the error was buried in every process's traceback)
    env = {**env, "PY": sys.executable}
    done = subprocess.run(["bash", str(script), "--config", "experiments/dna/nope.yaml"], env=env,
                          capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and done.stderr.strip() == (
        f"torchrun.sh: --config: file 'experiments/dna/nope.yaml' not found (looked in {tmp_path} and in {ROOT})"
    )
    # settings given inline go through as they are (a stand-in Python prints what torchrun would be given)
    echo = tmp_path / "echo_python"
    echo.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    echo.chmod(0o755)
    done = subprocess.run(["bash", str(script), "--config", "trainer: {max_epochs: 1}", "--config= {a: 1}"],
                          env={**env, "PY": str(echo)}, capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--config\ntrainer: {max_epochs: 1}\n--config\n {a: 1}\n--trainer\n" in done.stdout


def test_the_slurm_script_puts_your_configs_before_its_layout_and_your_options_after(tmp_path):
    """Its own options came before --config: the 'put --config first' note on every job, and a config's own
    trainer.devices would have undone the layout SLURM started (trial 22, as torchrun.sh)."""
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')  # what srun would start, one argument a line
    srun.chmod(0o755)
    env = {**os.environ, "PATH": f"{srun.parent}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_NUM_NODES": "2",
           "SLURM_NTASKS_PER_NODE": "4", "SLURM_SUBMIT_DIR": str(tmp_path), "PY": "python"}  # fmt: skip
    script = ROOT / "experiments" / "launch" / "slurm.sh"
    args = ["--config", "a.yaml", "--trainer.max_epochs=3", "--config=b.yaml", "--ckpt_path", "x.ckpt"]
    done = subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "python", "-m", "experiments", "fit", "--config", "a.yaml", "--config=b.yaml",
        "--trainer", "experiments/trainer/multinode.yaml", "--trainer.num_nodes", "2", "--trainer.devices", "4",
        "--ckpt_path", "last", "--trainer.max_epochs=3", "--ckpt_path", "x.ckpt",
    ]  # fmt: skip


@pytest.mark.ddp
@pytest.mark.slow  # a minute on 2 cores: make test-all
def test_two_nodes_on_localhost_under_torchrun_agree(tmp_path):
    """experiments/launch/torchrun.sh on two "nodes" of localhost: the same weights on both, and the same as
    a 2-process run on one node."""
    common = ["--config", CNN, *TINY_DATA, "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
              "--trainer", str(TRAINER / "ddp_cpu.yaml")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    env.pop("WANDB_SERVICE", None)
    port = _free_port()
    nodes = []
    for rank in (0, 1):  # the launch script users run on each node, with its CPU settings
        digest = {"class_path": "faults.WeightsDigest", "init_args": {"folder": str(tmp_path / "nodes")}}
        cmd = ["bash", str(ROOT / "experiments" / "launch" / "torchrun.sh"), "--config", CNN, *TINY_DATA,
               "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
               "--config", yaml.safe_dump({"trainer": {"callbacks+": [digest]}})]  # fmt: skip
        node = {"NNODES": "2", "NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                "NPROC_PER_NODE": "1", "TRAINER": str(TRAINER / "ddp_cpu.yaml"), "PY": sys.executable}  # fmt: skip
        nodes.append(
            subprocess.Popen(
                cmd,
                cwd=tmp_path,
                env={**env, **node},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
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


@pytest.mark.ddp
@pytest.mark.slow  # a minute on 2 cores (make test-all); the single-process kill and resume stay in the default suite
def test_a_ddp_run_killed_mid_epoch_and_resumed_continues_the_same_order(in_tmp):
    """Both processes killed at step 7 (epoch 1, two batches in; a checkpoint every step) and resumed with
    --ckpt_path last: each rank trains on the rest of its shard of epoch 1, as a run never killed would."""
    args = ["--config", CNN, *TINY_DATA, "--data.simulation.n_train=160", *CSV_ONLY, "--trainer.max_epochs=2"]
    ddp = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    every_step = [
        "--trainer.callbacks+=experiments.checkpoints.LastCheckpoint",
        "--trainer.callbacks.every_n_train_steps=1",
    ]
    kill = ["--trainer.callbacks+=faults.KillAt", "--trainer.callbacks.step=7"]
    killed = run_module("fit", *args, *ddp, "--trainer.callbacks=null", *every_step, *kill, cwd=in_tmp)
    assert killed.returncode == -9, killed.stderr[-3000:]
    record = ["--trainer.callbacks+=faults.RecordBatches", "--trainer.callbacks.folder=after"]
    resumed = run_module("fit", *args, *ddp, *record, "--ckpt_path=last", cwd=in_tmp)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("resuming from ") == 1  # said once, not once per process (trial 32)
    single, _, _ = _single_process_batches(args, epochs=2)  # 10 batches an epoch: 5 steps per rank
    for rank in range(2):
        after = json.loads((in_tmp / "after" / f"rank{rank}.json").read_text())["train"]
        assert [e for e, _ in after] == [1, 1, 1]  # steps 8-10: the last three of epoch 1
        assert [b for _, b in after] == [single[1][2 * k + rank] for k in (2, 3, 4)], rank


@pytest.mark.ddp
@pytest.mark.slow  # three 2-process runs (make test-all)
def test_a_ddp_run_killed_and_resumed_reaches_the_weights_of_one_never_killed(in_tmp):
    """Dropout draws from each process's own RNG, and the two ranks draw differently (150 sequences: the last
    batches differ in size), so each rank must resume its own RNG streams, not rank 0's (which it did before
    2026-11-27: the weights then differed after the resume)."""
    args = ["--config", CNN, *TINY_DATA, "--data.simulation.n_train=150", "--model.net.init_args.dropout=0.3",
            *CSV_ONLY, "--trainer.max_epochs=2", "--trainer.accelerator=cpu", "--trainer.devices=2",
            "--trainer.strategy=ddp"]  # fmt: skip

    def callbacks(*extra: dict) -> list[str]:
        last = "experiments.checkpoints.LastCheckpoint"
        every_step = {"class_path": last, "init_args": {"every_n_train_steps": 1}}
        return ["--config", yaml.safe_dump({"trainer": {"callbacks": [every_step, *extra]}})]

    def digest(folder: str) -> dict:
        return {"class_path": "faults.WeightsDigest", "init_args": {"folder": str(in_tmp / folder)}}

    for folder in ("whole", "killed"):
        (in_tmp / folder).mkdir()
    whole = run_module("fit", *args, *callbacks(digest("whole_weights")), cwd=in_tmp / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    kill = {"class_path": "faults.KillAt", "init_args": {"step": 7}}  # epoch 1, 5 steps an epoch
    killed = run_module("fit", *args, *callbacks(kill), cwd=in_tmp / "killed")
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = run_module("fit", *args, *callbacks(digest("resumed_weights")), "--ckpt_path=last",
                         cwd=in_tmp / "killed")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for rank in (0, 1):
        resumed_weights, whole_weights = (
            in_tmp / f / f"rank{rank}.txt" for f in ("resumed_weights", "whole_weights")
        )
        assert resumed_weights.read_text() == whole_weights.read_text(), rank


@pytest.mark.ddp
@pytest.mark.slow  # 30 s and more of two gloo processes per case (make test-all): the suite stays under 15 min
@pytest.mark.parametrize("config", ["dinov2_fine_tune.yaml", "efficientnet_lite0.yaml"])
def test_a_backbone_unfrozen_under_ddp_trains_the_same_on_every_rank(config, in_tmp):
    """BackboneFinetuning unfreezes the backbone after DDP wrapped the model without it (Lightning issue
    #20340): its gradients are averaged over the ranks, so both processes end with the same weights, and
    the backbone did train. DINOv2's layer-decay groups and EfficientNet's frozen norm layers."""
    import timm
    from image_data import image_args
    from safetensors.torch import save_file
    from test_finetuning import TINY_DINOV2

    dinov2 = config.startswith("dinov2")
    kwargs = TINY_DINOV2 if dinov2 else {}
    name = "vit_small_patch14_dinov2" if dinov2 else "efficientnet_lite0"
    torch.manual_seed(0)
    source = timm.create_model(name, num_classes=0, **({"img_size": 28} if dinov2 else {}), **kwargs)
    weights = in_tmp / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    args = [*image_args(in_tmp, config), f"--model.net.init_args.weights_file={weights}",
            "--data.img_size=28", "--trainer.max_epochs=2", "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=1", "--trainer.accelerator=cpu", "--trainer.devices=2",
            "--trainer.strategy=ddp", "--trainer.callbacks+=faults.WeightsDigest",
            f"--trainer.callbacks.folder={in_tmp / 'weights'}"]  # fmt: skip
    if dinov2:
        args.append(f"--model.net.init_args.model_kwargs={json.dumps(kwargs)}")
    done = run_module("fit", *args, cwd=in_tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    digests = [(in_tmp / "weights" / f"rank{r}.txt").read_text() for r in range(2)]
    assert digests[0] == digests[1]
    trained = torch.load(next((in_tmp / "logs").rglob("last.ckpt")), weights_only=True)["state_dict"]
    backbone = [k for k in source.state_dict() if source.state_dict()[k].is_floating_point()]
    changed = [k for k in backbone if not torch.equal(trained[f"net.model.{k}"], source.state_dict()[k])]
    assert len(changed) > len(backbone) // 2, changed  # the backbone trained in the second epoch
