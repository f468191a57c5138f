"""Surviving a kill: resume after SIGKILL (bit-exact), `--ckpt_path last`, atomic checkpoints, `compare`
re-runs that keep finished runs."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CNN, CSV_ONLY, ROOT, TINY_DATA, last_line, run_main, run_module

from archbench.errors import ConfigError
from experiments.cli import ExperimentCLI
from lit_models.flops import FlopsTally

EVERY_STEP = {
    "trainer": {
        "callbacks": [
            {"class_path": "experiments.checkpoints.LastCheckpoint", "init_args": {"every_n_train_steps": 1}}
        ]
    }
}
RESUMABLE = [
    "--config",
    CNN,
    *TINY_DATA,
    "--data.simulation.n_train=160",
    "--model.net.init_args.dropout=0.2",  # dropout draws from the RNG: its state must be restored too
    "--trainer.max_epochs=2",
    "--trainer.deterministic=true",
    "--trainer.enable_progress_bar=false",
]


def _fit(cwd, *extra, callbacks=None, in_process=False):
    config = json.loads(json.dumps(EVERY_STEP))
    config["trainer"]["callbacks"] += callbacks or []
    args = ["fit", *RESUMABLE, "--config", yaml.safe_dump(config), *extra]
    if not in_process:  # a process of its own: it can be killed
        return run_module(*args, cwd=cwd)
    here = os.getcwd()
    os.chdir(cwd)
    try:
        ExperimentCLI(args=args)
    finally:
        import wandb

        wandb.finish()  # as a process of its own would end its run (the logger leaves it open)
        os.chdir(here)
    return None


def _last(folder):
    """The newest last*.ckpt (a resumed run may write last-v1.ckpt beside the one it resumed)."""
    return max(folder.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)


def _weights(folder) -> dict:
    return torch.load(_last(folder), weights_only=True)["state_dict"]


def _wandb_ids(folder) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[-1] for p in folder.rglob("offline-run-*"))


@pytest.mark.slow  # 40 s a bound (make test-all); a kill after the best and a kill mid-save stay in the default suite
@pytest.mark.parametrize(
    "bound", [[], ["--trainer.max_steps=20", "--trainer.max_epochs=-1"]], ids=["epochs", "steps"]
)
def test_sigkill_then_resume_reaches_the_same_weights(tmp_path, capsys, bound):
    """Killed mid-epoch, and killed on the first batch of an epoch (the checkpoint holds the last step of the
    one before: Lightning then restarts on that epoch's last batch without reading from the loader). The
    killed runs have processes of their own; the others run in this one. Bounded by epochs, and by steps
    (Lightning restores step-bound training otherwise: a kill's resume is exact, training on is not)."""
    whole = tmp_path / "whole"
    whole.mkdir()
    _fit(whole, *bound, in_process=True)  # 10 steps per epoch, 2 epochs, a checkpoint every step
    for step in (7, 10):
        killed = tmp_path / f"killed{step}"
        killed.mkdir()
        result = _fit(
            killed, *bound, callbacks=[{"class_path": "faults.KillAt", "init_args": {"step": step}}]
        )
        assert result.returncode == -signal.SIGKILL, f"step {step}: {result.stderr[-2000:]}"
        saved = torch.load(next(killed.rglob("last.ckpt")), weights_only=True)
        assert saved["global_step"] == step
        capsys.readouterr()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _fit(killed, *bound, "--ckpt_path=last", in_process=True)
        assert (
            "resuming from runs/dna/lightning_logs/version_0/checkpoints/last.ckpt" in capsys.readouterr().out
        )
        assert not [w for w in caught if "not resumable" in str(w.message)]
        assert len(list((killed / "runs" / "dna" / "lightning_logs").iterdir())) == 1  # the same run folder
        ours, reference = _weights(killed), _weights(whole)
        assert torch.load(_last(killed), weights_only=True)["global_step"] == 20
        tallies = [FlopsTally() for _ in range(2)]
        for tally, folder in zip(tallies, (killed, whole), strict=True):
            tally.load_state_dict(torch.load(_last(folder), weights_only=True)["flops_tally"])
        assert (
            tallies[0].batches == tallies[1].batches == 20
        )  # every batch counted once, the killed run's too
        assert tallies[0].total() == tallies[1].total() > 0
        different = [k for k in reference if not torch.equal(reference[k], ours[k])]
        assert not different, f"killed at step {step}: {different}"
        ids = _wandb_ids(killed)
        assert len(ids) == 2 and ids[0] == ids[1], ids  # the resumed W&B run has the same id


def test_sigterm_saves_the_step_it_stopped_at_and_resumes_to_the_same_weights(tmp_path, capsys):
    """SIGTERM (a scheduler's time limit) mid-epoch, between the every-3-steps saves: the step under way ends,
    last.ckpt holds it, the command says so with the shell's status for SIGTERM (Lightning's own exit was
    status 0, and the steps since the last save were lost), and the resumed run ends on the weights of a run
    never stopped."""
    every_third = [
        {"class_path": "experiments.checkpoints.LastCheckpoint", "init_args": {"every_n_train_steps": 3}}
    ]
    once = "--trainer.max_epochs=1"  # 10 steps
    whole = tmp_path / "whole"
    whole.mkdir()
    _fit(whole, once, in_process=True)
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    config = yaml.safe_dump({"trainer": {"callbacks": [*every_third, {"class_path": "faults.TermAt",
                                                                      "init_args": {"step": 7}}]}})  # fmt: skip
    result = run_main("fit", *RESUMABLE, "--config", config, once, cwd=stopped)
    assert result.returncode == 143, result.stderr[-2000:]
    assert last_line(result).startswith("terminated (SIGTERM): the run stopped after a whole step")
    assert torch.load(_last(stopped), weights_only=True)["global_step"] == 8  # step 7 ended; not 6, the save
    _fit(stopped, "--ckpt_path=last", once, in_process=True)
    assert "resuming from" in capsys.readouterr().out
    ours, reference = _weights(stopped), _weights(whole)
    assert torch.load(_last(stopped), weights_only=True)["global_step"] == 10
    assert not [k for k in reference if not torch.equal(reference[k], ours[k])]
    # stopped between the micro-batches of an accumulated step: their gradients are in no checkpoint, so nothing
    # is saved, and the message says the run resumes from its last save instead
    config = yaml.safe_dump({"trainer": {"callbacks": [*every_third, {"class_path": "faults.TermAt",
                                                                      "init_args": {"step": 2}}]}})  # fmt: skip
    accumulating = tmp_path / "accumulating"
    accumulating.mkdir()
    # Ctrl-C: one line and the shell's status for SIGINT (Lightning's "Detected KeyboardInterrupt" and status 1)
    config_int = yaml.safe_dump({"trainer": {"callbacks": [*every_third, {"class_path": "faults.InterruptAt",
                                                                          "init_args": {"step": 4}}]}})  # fmt: skip
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    previous = signal.getsignal(signal.SIGINT)
    # as a new process starts (Python's handler): an earlier test's KeyboardInterrupt in a trainer leaves SIGINT
    # ignored in this shared pytest process (Lightning's call.py sets SIG_IGN for its shutdown)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = run_main("fit", *RESUMABLE, "--config", config_int, once, cwd=interrupted)
    finally:  # Lightning ignores SIGINT from a Ctrl-C on: this test process's own handler comes back
        signal.signal(signal.SIGINT, previous)
    # the steps since the last save (step 3) said, not the step under way alone (trial 33)
    assert result.returncode == 130 and last_line(result) == (
        "interrupted (Ctrl-C) at step 4: the last 1 step and the one under way were not saved (the run's last save "
        "is of step 3); 'fit ... --ckpt_path last' resumes it from step 3"
    )
    # resumed, then stopped again before its next save: the checkpoint it resumed from is the last save (its state
    # held the save before it: the reviewer's "resumes it from step 2" of a run resumed from step 4)
    config_int = yaml.safe_dump({"trainer": {"callbacks": [*every_third, {"class_path": "faults.InterruptAt",
                                                                          "init_args": {"step": 4}}]}})  # fmt: skip
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = run_main(
            "fit", *RESUMABLE, "--config", config_int, once, "--ckpt_path=last", cwd=interrupted
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.returncode == 130 and last_line(result) == (
        "interrupted (Ctrl-C) at step 4: the last 1 step and the one under way were not saved (the run's last save "
        "is of step 3); 'fit ... --ckpt_path last' resumes it from step 3"
    )
    # before any save (trial 28: the same message, of a save the run did not have)
    config_int = yaml.safe_dump({"trainer": {"callbacks": [{"class_path": "experiments.checkpoints.LastCheckpoint"},
                                                           {"class_path": "faults.InterruptAt",
                                                            "init_args": {"step": 2}}]}})  # fmt: skip
    early = tmp_path / "early"
    early.mkdir()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = run_main("fit", *RESUMABLE, "--config", config_int, once, cwd=early)
    finally:
        signal.signal(signal.SIGINT, previous)
    # and the folder left without a checkpoint named (trial 33)
    assert not list((early / "runs" / "dna" / "lightning_logs" / "version_0").rglob("*.ckpt"))
    assert result.returncode == 130 and last_line(result) == (
        "interrupted (Ctrl-C) at step 2: nothing of this run was saved yet (its folder runs/dna/lightning_logs/"
        "version_0 holds no "
        "checkpoint): 'fit ... --ckpt_path last' starts it over"
    )
    # the command it names: a new run, beside the folder without a checkpoint, said
    again = run_main("fit", *RESUMABLE, once, "--ckpt_path=last", cwd=early)
    assert again.returncode == 0, again.stderr[-2000:]
    assert ("--ckpt_path last: no earlier run of this model and data to resume (runs/dna/lightning_logs/version_0 "
            "stopped before its first save: no checkpoint there); starting a new run") in again.stdout  # fmt: skip
    result = run_main("fit", *RESUMABLE, "--config", config, once, "--trainer.accumulate_grad_batches=2",
                      cwd=accumulating)  # fmt: skip
    assert result.returncode == 143 and last_line(result) == (
        "terminated (SIGTERM): the step under way was not saved; 'fit ... --ckpt_path last' resumes it from the "
        "run's last save"
    )
    # the same before any save of the run: said as the Ctrl-C above is
    config = yaml.safe_dump({"trainer": {"callbacks": [{"class_path": "experiments.checkpoints.LastCheckpoint"},
                                                       {"class_path": "faults.TermAt", "init_args": {"step": 1}}]}})  # fmt: skip
    unsaved = tmp_path / "unsaved"
    unsaved.mkdir()
    result = run_main("fit", *RESUMABLE, "--config", config, once, "--trainer.accumulate_grad_batches=2",
                      cwd=unsaved)  # fmt: skip
    assert result.returncode == 143 and last_line(result) == (
        "terminated (SIGTERM): the step under way was not saved, nor anything of this run before it: 'fit ... "
        "--ckpt_path last' starts it over"
    )


FAKE_RUN = """
import os, signal

def main(rest):  # a peer's error: marked as LastCheckpoint marks it, raised in a SIGTERM handler, or neither
    if rest == ["marked"]:
        err = RuntimeError("[pair.cc:561] Connection closed by peer [127.0.0.1]:15541")
        err.after_sigterm = True
        raise err
    found = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):  # Lightning's DDP broadcast from inside its handler, the peer gone
        raise RuntimeError("Connection reset by peer")

    signal.signal(signal.SIGTERM, handler)
    try:
        if rest == ["in_handler"]:
            os.kill(os.getpid(), signal.SIGTERM)
        raise RuntimeError("[pair.cc:561] Connection closed by peer [127.0.0.1]:15541")
    finally:
        signal.signal(signal.SIGTERM, found)
"""


def test_a_peers_error_after_sigterm_is_said_as_the_stop_and_any_other_error_is_not(
    tmp_path, monkeypatch, capsys
):
    """Trial 11: SIGTERM to every process of a DDP run (a kill of the process group) left a process whose peer had
    stopped first with gloo's 100-line traceback; it now says the stop in one line, status 143."""
    from types import SimpleNamespace

    from experiments import __main__ as command_line
    from experiments.checkpoints import LastCheckpoint

    (tmp_path / "fake_run.py").write_text(FAKE_RUN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(command_line.COMMANDS, "fake", "fake_run")
    for case in (["marked"], ["in_handler"]):
        assert command_line.main(["fake", *case]) == 143
        said = capsys.readouterr().err.strip()
        assert said.startswith("terminated (SIGTERM): stopped when another process of the run had stopped "
                               "(RuntimeError: ") and said.endswith(")")  # fmt: skip
    with pytest.raises(RuntimeError, match="Connection closed by peer"):  # no SIGTERM: the error as it is
        command_line.main(["fake", "unmarked"])
    # LastCheckpoint marks a RuntimeError only where Lightning had received SIGTERM, under several processes
    for received, world, marked in ((True, 2, True), (False, 2, False), (True, 1, False)):
        err = RuntimeError("Connection closed by peer")
        trainer = SimpleNamespace(received_sigterm=received, world_size=world, training=True)
        LastCheckpoint().on_exception(trainer, None, err)
        assert getattr(err, "after_sigterm", False) is marked


def test_under_ddp_sigterm_stops_after_the_step_once_without_a_broadcast_in_the_handler():
    """Lightning's DDP handler broadcasts from inside the signal handler, which paired with another collective and
    hung both processes (3 of 15 kills); ours notes the stop for Lightning's loops, forwards it to the
    processes Lightning started, once, and calls the handler from before the fit."""
    import signal
    from types import SimpleNamespace

    from experiments import checkpoints

    kills, before_calls, previous = [], [], signal.getsignal(signal.SIGTERM)
    connector = SimpleNamespace(received_sigterm=False, _original_handlers={
        signal.SIGTERM: lambda signum, frame: before_calls.append(signum)})  # fmt: skip
    trainer = SimpleNamespace(_signal_connector=connector, local_rank=0,
                              strategy=SimpleNamespace(launcher=SimpleNamespace(kill=kills.append)))  # fmt: skip
    try:
        checkpoints.stop_after_the_step_without_broadcast(trainer)
        for _ in range(3):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # Python runs the handler between bytecodes
        assert connector.received_sigterm and kills == [signal.SIGTERM] and before_calls == [signal.SIGTERM]
        assert checkpoints._SIGTERMS == [signal.SIGTERM] * 3  # each noted, for on_exception
    finally:
        signal.signal(signal.SIGTERM, previous)
        checkpoints._SIGTERMS.clear()  # as a new fit's handler finds it


def test_resume_last_starts_fresh_without_a_run_and_never_takes_another_models_run(in_tmp):
    for config in (CNN, str(ROOT / "experiments" / "dna" / "lstm.yaml")):  # the LSTM must not resume the CNN
        run = run_main(
            "fit",
            "--config",
            config,
            *TINY_DATA,
            *CSV_ONLY,
            "--trainer.max_epochs=1",
            "--ckpt_path=last",
            cwd=in_tmp,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert "resuming" not in run.stdout
    assert sorted(p.name for p in (in_tmp / "lightning_logs").iterdir()) == ["version_0", "version_1"]
    # the CNN again with another learning rate: a new run, and the setting that made it one is said (trial 16:
    # "no earlier run of this model and data" while version_0 was one)
    run = run_main("fit", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--trainer.max_epochs=1", "--ckpt_path=last",
                   "--model.optimizer.init_args.lr=0.01", cwd=in_tmp)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        "--ckpt_path last: starting a new run: lightning_logs/version_0, the nearest earlier run of this model, was "
        "made with other settings (model.init_args.optimizer.init_args.lr: 0.003 -> 0.01). To go on from its "
        "checkpoint instead, give --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt" in run.stderr
    )


def test_a_run_stopped_mid_epoch_resumes_only_in_batches_of_its_own_size(in_tmp):
    """Trial 16: ``--data.batch_size 32`` on resuming a run of batches of 8, stopped at batch 300 of an epoch, was
    taken unsaid: the saved count of batches then meant 4x the examples, the epoch's last quarter was never
    trained and the epoch after had one step."""
    args = ["fit", "--config", CNN, *TINY_DATA, *CSV_ONLY, "--data.batch_size=8"]  # 8 batches an epoch
    ExperimentCLI(args=[*args, "--trainer.max_steps=3"])
    ckpt = next(in_tmp.rglob("last.ckpt"))
    with pytest.raises(ConfigError) as said:
        ExperimentCLI(args=[*args, f"--ckpt_path={ckpt}", "--trainer.max_steps=6", "--data.batch_size=16"])
    assert str(said.value) == (
        f"ckpt_path: {ckpt} stopped in epoch 0 after 3 batches of 8 on 1 process(es), and this run reads batches "
        "of 16 on 1: its position would mean other examples. Resume with --data.batch_size 8 on 1 process(es), or "
        "start a new run from its weights (--model.init_from CKPT)"
    )
    assert len(list(in_tmp.rglob("version_*"))) == 1  # nothing written
    resumed = ExperimentCLI(args=[*args, f"--ckpt_path={ckpt}", "--trainer.max_steps=8"])  # the epoch's end
    assert resumed.trainer.global_step == 8
    ckpt = next(Path(resumed.trainer.log_dir).rglob("last.ckpt"))
    again = ExperimentCLI(
        args=[*args, f"--ckpt_path={ckpt}", "--trainer.max_steps=10", "--data.batch_size=16"]
    )
    assert again.trainer.global_step == 10  # between epochs: any batch size


def test_a_users_own_config_without_a_logger_is_resumed_and_tested_from_its_run_folder(
    in_tmp, capsys, monkeypatch
):
    """No modality base sets a logger: the run goes where Lightning's default logger puts it
    (``lightning_logs/version_N``), and ``--ckpt_path last`` finds it there (trial 11: it said "no earlier run" and
    started over, and ``test --ckpt_path last`` found nothing)."""
    spec = yaml.safe_load(Path(CNN).read_text())
    (in_tmp / "mine.yaml").write_text(yaml.safe_dump({"model": spec["model"], "data": {
        "class_path": "datamodules.dna.DNADataModule", "init_args": {"batch_size": 16}}}))  # fmt: skip
    args = ["--config", "mine.yaml", *TINY_DATA, "--trainer.enable_progress_bar=false"]
    monkeypatch.setenv("HOME", str(in_tmp / "home"))
    # here, in trainer.default_root_dir, and in one under ~ given quoted (no shell expands it: trial 12 found the
    # logs in ~/mine and the checkpoints in ./~/mine, and a resume that started over)
    for root, made in (
        (None, in_tmp),
        ("elsewhere", in_tmp / "elsewhere"),
        ("~/mine", in_tmp / "home" / "mine"),
    ):
        where = [f"--trainer.default_root_dir={root}"] if root else []
        ExperimentCLI(args=["fit", *args, *where, "--trainer.max_epochs=1"])
        folder = made / "lightning_logs" / "version_0"
        steps = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        capsys.readouterr()
        resumed = ExperimentCLI(args=["fit", *args, *where, "--trainer.max_epochs=2", "--ckpt_path=last"])
        assert "resuming from " in capsys.readouterr().out
        assert resumed.trainer.global_step == 2 * steps and resumed.trainer.logger.log_dir.endswith(
            "version_0"
        )
        assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2 * steps
        tested = ExperimentCLI(args=["test", *args, *where, "--ckpt_path=last"])
        assert Path(tested.trainer.ckpt_path).resolve() == (folder / "checkpoints" / "last.ckpt").resolve()
    assert not (in_tmp / "~").exists()


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
    # made by a version whose data module lacked an option that holds its default now: the same run, kept
    saved = (run / "run_config.yaml").read_text()
    assert "    checkpoint: null\n" in saved
    (run / "run_config.yaml").write_text(saved.replace("    checkpoint: null\n", "", 1))
    compare(args)
    assert (run / "checkpoints" / "last.ckpt").stat().st_mtime == stamp
    assert json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]["test"] == first["test"]
    # damaged by something else (a copy cut short): named, in one line, and nothing else is touched
    whole = {f: f.read_bytes() for f in (run / "result.json", run / "checkpoints" / "last.ckpt")}
    (run / "result.json").write_bytes(whole[run / "result.json"][:100])
    with pytest.raises(ConfigError, match=rf"^{run / 'result.json'}: damaged \(Unterminated string .*\); delete it "
                       "and run again: that run resumes from its last checkpoint"):  # fmt: skip
        compare(args)
    (run / "result.json").unlink()  # as if killed after its last checkpoint: resumed, not restarted
    (run / "checkpoints" / "last.ckpt").write_bytes(whole[run / "checkpoints" / "last.ckpt"][:1000])
    with pytest.raises(ConfigError, match=r"^compare: '.*last.ckpt' is not a checkpoint or is damaged .*; delete it "
                       "to train that run again$"):  # fmt: skip
        compare(args)
    (run / "checkpoints" / "last.ckpt").write_bytes(whole[run / "checkpoints" / "last.ckpt"])
    logged = list(csv.DictReader((run / "metrics.csv").open()))
    compare(args)
    assert json.loads((run / "result.json").read_text())["test"] == pytest.approx(first["test"])
    rows = list(csv.DictReader((run / "metrics.csv").open()))  # the validation curve kept for comparison.png
    assert [{k: r[k] for k in logged[0]} for r in rows[: len(logged)]] == logged
    with pytest.raises(Exception, match=r"this run was made with other settings than this command's \(line \d+ "
                       r"was 'lr: 0.003', is 'lr: 0.1' now; see run_config.yaml there\)"):  # fmt: skip
        compare([*args, "--model.optimizer.lr=0.1"])
    # a run that saved nothing (it failed before its first checkpoint) starts again with the new settings
    (run / "result.json").unlink()
    for ckpt in (run / "checkpoints").iterdir():
        ckpt.unlink()
    compare([*args, "--model.optimizer.lr=0.1"])
    assert "lr: 0.1" in (run / "run_config.yaml").read_text() and (run / "result.json").is_file()
    # its last.ckpt deleted by hand: trained again, without the earlier attempt's best-*.ckpt piling up beside
    (run / "result.json").unlink()
    (run / "checkpoints" / "last.ckpt").unlink()
    compare([*args, "--model.optimizer.lr=0.1"])
    assert not list((run / "checkpoints").glob("*-v*.ckpt")) and (run / "checkpoints" / "last.ckpt").is_file()


# --- last.ckpt is the latest state, not the best ------------------------------------------------------------

FROZEN = [  # lr 0: the validation loss never improves after its first value, so the best stays at step 2
    "--config",
    CNN,
    *TINY_DATA,
    *CSV_ONLY,
    "--trainer.max_epochs=2",  # 4 validations: within the base's early-stopping patience, so it runs to the end
    "--model.optimizer.lr=0.0",
    "--model.lr_scheduler=null",
]  # 64 sequences in batches of 16: 4 steps an epoch, validated after 2 and 4 (val_check_interval 0.5)


def _step(path) -> int:
    return torch.load(path, weights_only=True, map_location="cpu")["global_step"]


def test_last_ckpt_holds_the_final_step_when_validation_stopped_improving(in_tmp):
    ExperimentCLI(args=["fit", *FROZEN])
    best = next(in_tmp.rglob("best-*.ckpt"))
    assert _step(best) == 2
    assert _step(next(in_tmp.rglob("last.ckpt"))) == 8  # the end of training, not a copy of the best


def test_a_kill_after_the_best_resumes_from_the_latest_save(in_tmp):
    kill = yaml.safe_dump(
        {"trainer": {"callbacks+": [{"class_path": "faults.KillAt", "init_args": {"step": 7}}]}}
    )
    killed = run_module("fit", *FROZEN, "--config", kill, cwd=in_tmp)
    assert killed.returncode == -signal.SIGKILL
    assert _step(next(in_tmp.rglob("last.ckpt"))) == 6  # saved at the validation after step 6
    start = ["--trainer.callbacks+=faults.RecordStart", f"--trainer.callbacks.path={in_tmp / 'start.txt'}"]
    resumed = run_main("fit", *FROZEN, *start, "--ckpt_path=last", cwd=in_tmp)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and (in_tmp / "start.txt").read_text() == "6"  # not 2, the best
    assert _step(next(in_tmp.rglob("last.ckpt"))) == 8


def test_resuming_a_finished_run_trains_nothing_and_says_so(in_tmp, capsys):
    ExperimentCLI(args=["fit", *FROZEN])
    last = next(in_tmp.rglob("last.ckpt"))
    stamp = last.stat().st_mtime_ns
    ExperimentCLI(args=["fit", *FROZEN, "--ckpt_path=last"])
    assert "nothing to train: this run had finished at step 8" in capsys.readouterr().out
    assert last.stat().st_mtime_ns == stamp and _step(last) == 8
    # stopped early (patience 1: the second validation without improvement), then resumed: still nothing
    stop = ["--early_stopping.patience=1", "--trainer.logger.init_args.save_dir=early"]
    ExperimentCLI(args=["fit", *FROZEN, *stop])
    stopped = _step(next((in_tmp / "early").rglob("last.ckpt")))
    assert stopped < 8
    ExperimentCLI(args=["fit", *FROZEN, *stop, "--ckpt_path=last"])
    assert f"nothing to train: this run was stopped at step {stopped}" in capsys.readouterr().out
    assert _step(next((in_tmp / "early").rglob("last.ckpt"))) == stopped


def test_a_save_interval_in_steps_for_long_epochs(in_tmp):
    every = [
        "--trainer.callbacks+=experiments.checkpoints.LastCheckpoint",
        "--trainer.callbacks.every_n_train_steps=3",
    ]
    kill = yaml.safe_dump(
        {"trainer": {"callbacks+": [{"class_path": "faults.KillAt", "init_args": {"step": 7}}]}}
    )
    args = [*FROZEN, "--trainer.val_check_interval=1.0", "--trainer.callbacks=null", *every]
    killed = run_module("fit", *args, "--config", kill, cwd=in_tmp)
    assert killed.returncode == -signal.SIGKILL
    assert _step(next(in_tmp.rglob("last.ckpt"))) == 6  # the step save, after the epoch-end validation at 4


# --- resuming with other settings -----------------------------------------------------------------------------

SHORT = ["--config", CNN, *TINY_DATA, *CSV_ONLY, "--trainer.log_every_n_steps=1"]  # 4 steps an epoch


def test_training_on_keeps_the_logged_rows_and_stretches_the_schedule(in_tmp):
    """A finished run resumed with a higher max_steps: metrics.csv keeps the first run's rows (Lightning's CSV
    writer deletes the file of a folder it opens again), and the cosine schedule stretches to the new total
    instead of training on at its end rate of 0."""
    import csv

    ExperimentCLI(args=["fit", *SHORT, "--trainer.max_steps=4"])
    metrics = next(in_tmp.rglob("metrics.csv"))
    first = list(csv.DictReader(metrics.open()))
    with pytest.warns(UserWarning, match=r"planned 4 steps, this one 8: the cosine now ends at step 8"):
        ExperimentCLI(args=["fit", *SHORT, "--trainer.max_steps=8", "--ckpt_path=last"])
    rows = list(csv.DictReader(metrics.open()))
    assert rows[: len(first)] == [{k: r.get(k, "") for k in rows[0]} for r in first]  # kept, in order
    lr = [float(r["lr-AdamW/pg1"]) for r in rows if r.get("lr-AdamW/pg1")]
    # the rate of each step: cosine over 4 steps, then the first step trained on at the 8-step curve's value
    assert len(lr) == 8 and lr[4] == pytest.approx(0.5 * lr[0]) and min(lr[4:]) > 0
    assert _step(next(in_tmp.rglob("last.ckpt"))) == 8


def test_resume_last_without_a_logger_takes_the_root_folders_checkpoint(in_tmp, capsys):
    plain = ["fit", "--config", CNN, *TINY_DATA, "--trainer.logger=false", "--trainer.default_root_dir=out",
             "--trainer.enable_progress_bar=false"]  # fmt: skip
    ExperimentCLI(args=[*plain, "--ckpt_path=last", "--trainer.max_steps=2"])
    assert "no earlier run of this model and data to resume; starting a new run" in capsys.readouterr().out
    ExperimentCLI(args=[*plain, "--ckpt_path=last", "--trainer.max_steps=4"])
    assert "resuming from out/checkpoints/last.ckpt" in capsys.readouterr().out
    assert _step(in_tmp / "out" / "checkpoints" / "last.ckpt") == 4
    with pytest.raises(ConfigError, match=r"out/checkpoints/last.ckpt is a run of another model config"):
        ExperimentCLI(args=[*plain, "--ckpt_path=last", "--model.net.init_args.dropout=0.3"])  # same shapes


def test_an_evaluation_without_a_logger_keeps_the_fits_config_and_writes_its_own_beside_it(in_tmp):
    """Without a logger an evaluation's log folder is the trained run's default_root_dir: LightningCLI would
    write its config over the fit's config.yaml, the record of how the weights were made."""
    plain = ["--config", CNN, *TINY_DATA, "--trainer.logger=false", "--trainer.default_root_dir=out",
             "--trainer.enable_progress_bar=false"]  # fmt: skip
    ExperimentCLI(args=["fit", *plain, "--trainer.max_steps=2"])
    made = (in_tmp / "out" / "config.yaml").read_text()
    for stage in ("test", "validate", "predict"):
        ExperimentCLI(args=[stage, *plain, "--ckpt_path=last", "--data.batch_size=3"])
        assert (in_tmp / "out" / "config.yaml").read_text() == made
        assert "batch_size: 3" in (in_tmp / "out" / f"config.{stage}.yaml").read_text()


def test_a_test_of_a_runs_checkpoint_says_nothing_of_the_checkpoint_folders_state(in_tmp, recwarn):
    """An evaluation has a version folder of its own, so Lightning's ModelCheckpoint, restored from the run's
    checkpoint, warned "The dirpath has changed ... won't be reloaded" at every test: nothing an evaluation uses."""
    common = ["--config", CNN, *TINY_DATA, *CSV_ONLY]
    ExperimentCLI(args=["fit", *common, "--trainer.max_steps=2"])
    for stage in ("test", "validate"):
        result = run_main(stage, *common, "--ckpt_path=last", cwd=in_tmp)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "dirpath has changed" not in result.stderr + result.stdout
    assert not [w for w in recwarn if "dirpath has changed" in str(w.message)]


def test_a_damaged_or_deleted_last_checkpoint_is_named_with_the_checkpoints_beside_it(in_tmp):
    """``fit --ckpt_path last`` on a run whose last.ckpt something else cut short, or deleted: one line naming
    it and the checkpoints to resume from instead, not torch's traceback or a new run."""
    common = ["fit", "--config", CNN, *TINY_DATA, *CSV_ONLY]
    ExperimentCLI(args=[*common, "--trainer.max_steps=2"])
    last = in_tmp / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(ConfigError, match=r"^--ckpt_path last: '.*version_0/checkpoints/last.ckpt' is not a checkpoint "
                       r"or is damaged .*; leave out --ckpt_path to start a new run, or resume from one beside it "
                       r"with --ckpt_path FILE \(best-epoch=\d+-step=\d+.ckpt\)$"):  # fmt: skip
        ExperimentCLI(args=[*common, "--ckpt_path=last", "--trainer.max_steps=4"])
    # deleted: the run is neither resumed nor passed over for a new one without a word ("no earlier run")
    last.unlink()
    with pytest.raises(ConfigError, match=r"^--ckpt_path last: lightning_logs/version_0 is a run of this model and "
                       r"data without its last.ckpt \(it kept best-epoch=\d+-step=\d+.ckpt\): resume from one with "
                       r"--ckpt_path lightning_logs/version_0/checkpoints/best-.*, or leave out --ckpt_path"):  # fmt: skip
        ExperimentCLI(args=[*common, "--ckpt_path=last", "--trainer.max_steps=4"])
    assert sorted(p.name for p in (in_tmp / "lightning_logs").iterdir()) == ["version_0"]


def test_default_root_dir_moves_the_loggers_run_folder_and_resume_finds_it_there(in_tmp, capsys):
    """The modality bases give the loggers save_dir runs/<modality>; --trainer.default_root_dir moves them too,
    so the run, its checkpoints and its config land where the option says, and --ckpt_path last looks there."""
    moved = ["fit", "--config", CNN, *TINY_DATA, "--trainer.enable_progress_bar=false",
             "--trainer.logger=lightning.pytorch.loggers.CSVLogger", "--trainer.logger.init_args.save_dir=runs/dna",
             "--trainer.default_root_dir=mine", "--ckpt_path=last"]  # fmt: skip
    ExperimentCLI(args=[*moved, "--trainer.max_steps=2"])
    assert not (in_tmp / "runs").exists()
    saved = yaml.safe_load((in_tmp / "mine" / "lightning_logs" / "version_0" / "config.yaml").read_text())
    assert saved["trainer"]["logger"]["init_args"]["save_dir"] == "mine"  # as it ran
    capsys.readouterr()
    ExperimentCLI(args=[*moved, "--trainer.max_steps=4"])
    assert "resuming from mine/lightning_logs/version_0/checkpoints/last.ckpt" in capsys.readouterr().out


def test_last_is_a_run_of_this_model_on_this_training_data(in_tmp, capsys):
    """A run of the same model on other training data is not resumed (it would go on from weights and a schedule
    of another dataset) nor evaluated as `last`; another test file alone still finds the run."""
    common = ["--config", CNN, *CSV_ONLY, "--trainer.max_steps=2"]
    ExperimentCLI(args=["fit", *common, *TINY_DATA])
    other = [a.replace("n_train=64", "n_train=80") for a in TINY_DATA]
    capsys.readouterr()
    ExperimentCLI(args=["fit", *common, *other, "--ckpt_path=last"])
    assert (
        "--ckpt_path last: starting a new run: lightning_logs/version_0, the nearest earlier run of this model, was "
        "made with other settings (data.init_args.simulation.n_train: 64 -> 80)" in capsys.readouterr().err
    )
    assert sorted(p.name for p in (in_tmp / "lightning_logs").iterdir()) == ["version_0", "version_1"]
    (in_tmp / "new.txt").write_text("ACGTACGTACGTACGTAC 0.5\nGGGGCCCCAATTGGCCAA 1.5\n")
    ExperimentCLI(
        args=["test", *common, *TINY_DATA, f"--data.test_path={in_tmp / 'new.txt'}", "--ckpt_path=last"]
    )
    assert "test: last checkpoint lightning_logs/version_0/checkpoints/last.ckpt" in capsys.readouterr().out
    # a reading option given for a new file makes `last` another run's: the nearest is named, and how to read it
    # (trial 16: `--data.sequence_column seq` for a CSV to predict said only "no run ...")
    (in_tmp / "new.csv").write_text("seq,label\nACGTACGTACGTACGTAC,0.5\n")
    with pytest.raises(ConfigError, match=r"give the checkpoint's path; the nearest run, lightning_logs/version_1, was "
                                          r"made with other settings \(data.init_args.sequence_column: 'sequence' -> "
                                          r"'seq'\): give --ckpt_path lightning_logs/version_1/checkpoints/last.ckpt "
                                          r"for it$"):  # fmt: skip
        ExperimentCLI(args=["predict", *common, *other, "--data.predict_path=new.csv", "--data.sequence_column=seq",
                            "--ckpt_path=last"])  # fmt: skip


def test_a_run_saved_before_an_option_existed_is_the_same_run_at_that_options_default(tmp_path):
    """``--ckpt_path last`` compares the saved config with this one: an option the data class gained since (here
    the image folders' test_fraction) matches when it holds its default, and not otherwise."""
    import yaml

    from experiments.resume import _same_model

    data = {"class_path": "datamodules.images.ImageDataModule",
            "init_args": {"source": "folder", "train_path": "train", "test_fraction": 0.1}}  # fmt: skip
    model = {"class_path": "lit_models.PredictionTask", "init_args": {"label_smoothing": 0.0}}
    older = {"class_path": data["class_path"], "init_args": {"source": "folder", "train_path": "train"}}
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump({"model": model, "data": older}))
    assert _same_model(saved, {"model": model, "data": data})
    other = {**data, "init_args": {**data["init_args"], "test_fraction": 0.3}}
    assert not _same_model(saved, {"model": model, "data": other})
    newer_model = {**model, "init_args": {**model["init_args"], "confidence_threshold": None}}
    assert _same_model(saved, {"model": newer_model, "data": data})
    assert not _same_model(saved, {"model": {**model, "init_args": {"label_smoothing": 0.1}}, "data": data})


def test_a_run_resumed_with_fewer_epochs_than_it_trained_is_refused_in_one_line(in_tmp):
    """Resumed with a max_epochs below the epochs it has trained, Lightning stops inside its loop ("Please call
    iter(combined_loader) first"): said instead, before anything is written."""
    args = ["--config", CNN, *TINY_DATA, "--trainer.logger=false", "--trainer.enable_progress_bar=false"]
    ExperimentCLI(args=["fit", *args, "--trainer.max_epochs=3"])
    ckpt = next(in_tmp.rglob("last.ckpt"))
    result = run_main("fit", *args, "--trainer.max_epochs=1", f"--ckpt_path={ckpt}", cwd=in_tmp)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: ckpt_path: {ckpt} is at epoch 3 (step 12), past trainer.max_epochs 1: raise trainer.max_epochs "
        "to train on, or start a new run"
    )


def test_a_resumed_runs_config_evaluates_in_a_folder_of_its_own(in_tmp):
    """Trial 22: the config.yaml of a resumed run pins its logger to the run's version folder; predict and test
    given it opened that folder again, and Lightning's CSV writer deleted the fit's metrics.csv (a second predict
    wrote over the first's predictions)."""
    common = ["--config", CNN, *TINY_DATA, *CSV_ONLY]
    assert run_main("fit", *common, "--trainer.max_epochs=1", cwd=in_tmp).returncode == 0
    resumed = run_main("fit", *common, "--trainer.max_epochs=2", "--ckpt_path=last", cwd=in_tmp)
    assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.stderr[-3000:]
    run = in_tmp / "lightning_logs" / "version_0"
    logger = yaml.safe_load((run / "config.yaml").read_text())["trainer"]["logger"]
    assert (logger[0] if isinstance(logger, list) else logger)["init_args"]["version"] == "version_0"
    trained = (run / "metrics.csv").read_text()
    assert "val/loss" in trained
    saved = run / "config.yaml"
    for stage, wrote in (
        ("predict", "predictions.tsv"),
        ("test", "metrics.csv"),
        ("predict", "predictions.tsv"),
    ):
        result = run_main(
            stage, "--config", saved, f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}", cwd=in_tmp
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"{stage}: lightning_logs/version_0 holds a fit's logs and checkpoints" in result.stdout
        assert (run / "metrics.csv").read_text() == trained
        assert not (run / wrote).exists() or wrote == "metrics.csv"
    folders = sorted(p.name for p in (in_tmp / "lightning_logs").iterdir())
    assert folders == ["version_0", "version_1", "version_2", "version_3"]
    assert all((in_tmp / "lightning_logs" / f"version_{i}" / "predictions.tsv").is_file() for i in (1, 3))


def test_resuming_on_a_training_file_changed_in_place_is_refused(in_tmp):
    """Trial 22: the file reshuffled and grown under the same path, ``fit --ckpt_path last`` resumed unsaid, and
    20 of the new test split's 30 rows had been training or validation rows."""
    from datamodules.dna_io import write_text
    from datamodules.dna_simulator import simulate

    data = in_tmp / "mine.txt"
    write_text(data, simulate(90, seq_len=40, seed=1).data)
    common = ["fit", "--config", CNN, f"--data.train_path={data}", "--data.batch_size=16", *CSV_ONLY]
    assert run_main(*common, "--trainer.max_epochs=1", cwd=in_tmp).returncode == 0
    ckpt = in_tmp / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    os.utime(data, (1e9, 1e9))  # a copy's new time, the same contents: the same data
    resumed = run_main(*common, "--trainer.max_epochs=2", "--ckpt_path=last", cwd=in_tmp)
    assert resumed.returncode == 0 and "resuming" in resumed.stdout and "changed" not in resumed.stderr
    write_text(data, simulate(120, seq_len=40, seed=2).data)
    refused = run_main(*common, "--trainer.max_epochs=3", "--ckpt_path=last", cwd=in_tmp)
    assert refused.returncode == 2
    assert last_line(refused) == (
        f"error: --ckpt_path last: {data} changed since {ckpt.relative_to(in_tmp)} was saved (same path, other "
        "contents): the run's held-out splits and training order were made from the file as it was, so going on "
        "would mix them; put the file back as it was, start a new run (leave out --ckpt_path; --model.init_from "
        f"CKPT starts it from this run's weights), or go on anyway with --ckpt_path {ckpt.relative_to(in_tmp)}"
    )
    assert sorted(p.name for p in (in_tmp / "lightning_logs").iterdir()) == ["version_0"]
    # a test split held out of that file would be drawn again with other rows (trial 23); one of its own is fine
    evaluate = ["--config", CNN, f"--data.train_path={data}", *CSV_ONLY, f"--ckpt_path={ckpt}"]
    tested = run_main("test", *evaluate, cwd=in_tmp)
    assert tested.returncode == 2 and last_line(tested) == (
        f"error: test: the test split is held out of data.train_path {data}, which changed since {ckpt} was saved "
        "(other contents): drawn again now it would hold other rows, some of them trained on; put the file back as "
        "it was, or give the split a file of its own (data.test_path)"
    )
    write_text(in_tmp / "own_test.txt", simulate(20, seq_len=40, seed=3).data)
    assert (
        run_main("test", *evaluate, f"--data.test_path={in_tmp / 'own_test.txt'}", cwd=in_tmp).returncode == 0
    )
    with pytest.warns(UserWarning, match=rf"--ckpt_path {ckpt}: {data} changed \(other contents\) since .* goes on "
                      r"with the data as it is now"):  # fmt: skip
        ExperimentCLI(args=[*common, "--trainer.max_epochs=3", f"--ckpt_path={ckpt}"])


def test_a_split_drawn_from_rows_the_checkpoint_trained_on_is_refused(in_tmp):
    """Trial 30: a run fit with val and test files of their own trained on every row of its training file; test
    (and predict) with that file alone drew a test split from it and scored 40 trained rows, unsaid."""
    from datamodules.dna_io import write_text
    from datamodules.dna_simulator import simulate

    for name, seed in (("train", 1), ("val", 2), ("test", 3)):
        write_text(
            in_tmp / f"{name}.txt", simulate(60 if name == "train" else 20, seq_len=40, seed=seed).data
        )
    files = [f"--data.{n}_path={in_tmp / n}.txt" for n in ("train", "val", "test")]
    assert (
        run_main("fit", "--config", CNN, *files, *CSV_ONLY, "--trainer.max_epochs=1", cwd=in_tmp).returncode
        == 0
    )
    ckpt = in_tmp / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    for command in ("test", "predict"):
        refused = run_main(command, "--config", CNN, files[0], *CSV_ONLY, f"--ckpt_path={ckpt}", cwd=in_tmp)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert last_line(refused).startswith(
            f"error: {command}: the test split is drawn from data.train_path {in_tmp / 'train.txt'}, but {ckpt} "
            f"held out other rows of it (data.val_path '{in_tmp / 'val.txt'}' there, None here; data.test_path "
        ), last_line(refused)
    assert sorted(p.name for p in (in_tmp / "lightning_logs").iterdir()) == ["version_0"]  # nothing written
    assert (
        run_main("test", "--config", CNN, *files, *CSV_ONLY, f"--ckpt_path={ckpt}", cwd=in_tmp).returncode
        == 0
    )


def test_training_on_a_finished_run_with_max_steps_set_is_warned(in_tmp, recwarn):
    """Trials 25 and 26: Lightning 2.6 restores a finished step-bound run as if stopped inside an epoch and counts
    that epoch as done (max_epochs 2 -> 4 with max_steps set trained one epoch; max_steps 6 -> 8 numbered the
    rest of epoch 1 as epoch 2): said, not hidden. Epochs alone resume exactly and are not warned of."""
    warned = r"training on a finished run with trainer.max_steps set: Lightning 2.6 restores it as if stopped inside"
    ExperimentCLI(args=["fit", *SHORT, "--trainer.max_epochs=1", "--trainer.max_steps=100"])
    with pytest.warns(UserWarning, match=warned):
        ExperimentCLI(
            args=["fit", *SHORT, "--trainer.max_epochs=2", "--trainer.max_steps=100", "--ckpt_path=last"]
        )
    mid = f"--trainer.default_root_dir={in_tmp / 'mid'}"  # ended inside an epoch by max_steps (4 steps an epoch)
    ExperimentCLI(args=["fit", *SHORT, "--trainer.max_steps=6", mid])
    with pytest.warns(UserWarning, match=warned):
        ExperimentCLI(args=["fit", *SHORT, "--trainer.max_steps=8", mid, "--ckpt_path=last"])
    recwarn.clear()
    root = f"--trainer.default_root_dir={in_tmp / 'epochs'}"  # epochs alone: Lightning restores it exactly
    ExperimentCLI(args=["fit", *SHORT, "--trainer.max_epochs=1", root])
    ExperimentCLI(args=["fit", *SHORT, "--trainer.max_epochs=2", root, "--ckpt_path=last"])
    assert not [w for w in recwarn if "training on a finished run" in str(w.message)]
