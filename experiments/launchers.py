"""Where a comparison's runs execute (``compare --launcher``): one after another in the compare process
(``sequential``), in a pool of worker processes, one per device (``local``), or as a SLURM job array through
submitit (``slurm``). Every launcher runs the same unit, one model x seed run (``experiments.compare.run_one``:
a local worker takes them one after another, a SLURM job runs ``compare ... --run MODEL:SEED``), which keeps a finished run and resumes an unfinished one from its
``last.ckpt``; the compare process then gathers each run's ``result.json`` into one table. A run that fails is
reported with its log's path; the others are kept and tabled.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from archbench.errors import ConfigError

LAUNCHERS = ("sequential", "local", "slurm")


@dataclass
class SlurmOptions:
    """The ``slurm:`` section of a comparison file: the resources of each job of the array (one model x seed
    run per job; with several GPUs or nodes a run is itself DDP, with the trainer's own settings, e.g.
    ``--trainer experiments/trainer/ddp.yaml``).

    Args:
        partition: SLURM partition.
        time_min: Time limit of each job, in minutes.
        account: SLURM account to charge.
        nodes: Nodes per job.
        gpus_per_node: GPUs per node (0: a CPU job).
        tasks_per_node: Processes per node: one per GPU for DDP (submitit starts them; Lightning reads SLURM's
            variables). Default: ``gpus_per_node``, or 1 without GPUs.
        cpus_per_task: CPU cores per process.
        mem_gb: Memory per node, in GB.
        array_parallelism: Jobs of the array running at once (empty: SLURM's limit).
        qos: Quality of service.
        constraint: Node features required (``--constraint``).
        setup: Shell lines each job runs first (``module load ...``, ``source .venv/bin/activate``).
    """

    partition: str | None = None
    time_min: int = 60
    account: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    array_parallelism: int | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: list[str] | None = None

    def executor_parameters(self) -> dict:
        """submitit ``update_parameters`` arguments (the ``slurm_`` ones are ignored by its LocalExecutor)."""
        tasks = self.tasks_per_node or max(1, self.gpus_per_node)
        params = {"timeout_min": self.time_min, "nodes": self.nodes, "tasks_per_node": tasks,
                  "gpus_per_node": self.gpus_per_node}  # fmt: skip
        for key, value in (("cpus_per_task", self.cpus_per_task), ("mem_gb", self.mem_gb)):
            if value is not None:
                params[key] = value
        for key, value in (("partition", self.partition), ("account", self.account), ("qos", self.qos),
                           ("constraint", self.constraint), ("array_parallelism", self.array_parallelism),
                           ("setup", self.setup)):  # fmt: skip
            if value is not None:
                params[f"slurm_{key}"] = value
        return params


@dataclass
class Failure:
    model: str
    seed: int
    reason: str
    log: Path

    def __str__(self) -> str:
        return f"{job_name(self.model, self.seed)}: {self.reason} (log: {self.log})"


def job_name(model: str, seed: int) -> str:
    """``MODEL, seed N``, or ``MODEL, tuning`` for a job that tunes the row (seed -1)."""
    return f"{model}, tuning" if seed < 0 else f"{model}, seed {seed}"


def compare_command(argv: list[str], *extra: str) -> list[str]:
    """The compare command ``argv`` describes, in a process of its own: ``--serve`` (a local worker, reading
    ``MODEL<TAB>SEED`` lines) or ``--run MODEL:SEED`` (a SLURM job, each task of it under DDP)."""
    return [sys.executable, "-m", "experiments", "compare", *argv, *extra]


def own_env() -> dict[str, str]:
    """This environment for a child process, without this process's W&B service: a service shared with the parent
    outlives a killed child's runs ("run ID is in use" when they resume), so each child starts its own."""
    return {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}


def serve(run, run_dir) -> None:
    """A worker's loop (``compare ... --serve``; single-device runs: a DDP run would start its other ranks as
    workers too): for each ``MODEL<TAB>SEED`` line on stdin, ``run(model, seed)``
    with this process's output going to ``launcher.log`` in the run's folder, then one line back on the
    original stdout: ``done`` or ``failed`` and why. One process for many runs: torch and Lightning load once."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    for line in sys.stdin:
        model, seed = line.rstrip("\n").split("\t")
        log = run_dir(model, int(seed)) / "launcher.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            try:
                run(model, int(seed))
                status = "done"
            except Exception as err:  # this run failed; the worker goes on with the next
                traceback.print_exc()
                status = "failed\t" + failure_reason(err)[:300]  # one line of the pipe
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
        reply.write(f"{status}\n")


def failure_reason(err: BaseException) -> str:
    """A failed run's reason in one line: the last line of its error (a traceback's own last line says it)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[-1]


def parse_devices(devices: str | None) -> list[str]:
    """``--devices 0,1,2,3`` -> ["0", "1", "2", "3"]; a bare number N means N workers (devices 0..N-1)."""
    if devices is None:
        return ["0"]
    parts = [d.strip() for d in devices.split(",") if d.strip()]
    if len(parts) == 1 and parts[0].isdigit() and int(parts[0]) > 1:
        return [str(i) for i in range(int(parts[0]))]
    if not parts or not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise ConfigError(f"--devices: {devices!r} is not a list of distinct device numbers such as 0,1,2,3")
    return parts


def usable_cores() -> int:
    """The cores this process may run on (a container's or a job's share), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_env(device: str, workers: int, cuda: bool) -> dict[str, str]:
    """A worker's environment: its one GPU (``CUDA_VISIBLE_DEVICES``), or on CPU its share of the cores."""
    env = own_env()
    if cuda:  # the parent's own visible GPUs (a SLURM allocation, say) numbered from 0, as torch numbers them
        visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[int(device)] if visible else device
    else:
        threads = str(max(1, usable_cores() // workers))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    return env


def launch_local(argv: list[str], jobs: list[tuple[str, int]], run_dir, devices: list[str]) -> list[Failure]:
    """The jobs over one worker process per device (``serve``), each taking the next job when it is free; a
    worker that dies fails the job it held and is replaced. Returns the jobs that failed."""
    import torch

    cuda = torch.cuda.is_available()
    if cuda and any(int(d) >= torch.cuda.device_count() for d in devices):
        raise ConfigError(
            f"--devices: {','.join(devices)} but this machine has {torch.cuda.device_count()} GPUs"
        )
    cores = usable_cores()
    if not cuda and len(devices) > cores:  # each worker then gets one thread, and they still share the cores
        print(f"warning: --devices: {len(devices)} CPU workers on {cores} core{'s' * (cores != 1)}: they share "
              f"them, so each run takes longer than alone; --devices {cores} or fewer uses one core each at most",
              flush=True)  # fmt: skip
    if len(devices) > len(jobs):
        print(f"compare: {len(jobs)} run(s) for {len(devices)} workers: {len(devices) - len(jobs)} start no run",
              flush=True)  # fmt: skip
    pending: queue.Queue[tuple[str, int]] = queue.Queue()
    for job in jobs:
        pending.put(job)
    # Ctrl-C or SIGTERM: no new runs, the workers stopped. One lock orders a stop against a worker taking a job,
    # so that no worker starts a run (or a process) after the stop, which would then train it unattended.
    stopping, live, lock = threading.Event(), set(), threading.Lock()

    def worker(device: str) -> list[Failure]:
        failures, process, worker_log = [], None, None
        where = f"GPU {device}" if cuda else f"worker {device}"
        try:
            while not stopping.is_set():
                try:
                    model, seed = pending.get_nowait()
                except queue.Empty:
                    return failures
                with lock:
                    if stopping.is_set():
                        return failures
                    if process is None:  # its own output before and between runs: worker-N.log
                        worker_log = run_dir(model, seed).parent.parent / f"worker-{device}.log"
                        worker_log.parent.mkdir(parents=True, exist_ok=True)
                        with open(worker_log, "ab") as err:
                            process = subprocess.Popen(compare_command(argv, "--serve"), stdin=subprocess.PIPE,
                                                       stdout=subprocess.PIPE, stderr=err, text=True,
                                                       env=worker_env(device, len(devices), cuda))  # fmt: skip
                        live.add(process)
                    log = run_dir(model, seed) / "launcher.log"
                    print(f"{job_name(model, seed)}: started on {where} (log: {log})", flush=True)
                    try:
                        process.stdin.write(f"{model}\t{seed}\n")
                        process.stdin.flush()
                        sent = True
                    except BrokenPipeError:  # the worker died before it read the job
                        sent = False
                answer = process.stdout.readline().rstrip("\n") if sent else ""
                if answer == "done":
                    print(f"{job_name(model, seed)}: finished", flush=True)
                    continue
                if answer:  # the run raised; the worker lives on
                    failures.append(Failure(model, seed, answer.removeprefix("failed\t"), log))
                    continue
                code = process.wait()  # the worker died with the run: a new one takes the next job
                reason = f"exit status {code}" + (" (killed)" if code < 0 else "")
                failures.append(Failure(model, seed, reason, log if log.is_file() else worker_log))
                live.discard(process)
                process = None
            return failures
        finally:
            if process is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
                process.wait()
                live.discard(process)

    def stop() -> None:  # each worker's run gets SIGTERM: it ends its step and saves it (LastCheckpoint)
        with lock:
            stopping.set()
            for process in live:
                process.terminate()

    def on_sigterm(signum, frame) -> None:
        """The first SIGTERM stops the pool; a second, while the workers save, is ignored."""
        if not stopping.is_set():
            raise _Terminated

    # SIGTERM to this process (``kill``, a scheduler's time limit) would end it alone and leave the workers
    # training unattended: it stops the pool instead. Handlers are set in the main thread only; a Python handler,
    # unlike an ignored signal, is not inherited by the worker processes.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    pool = ThreadPoolExecutor(max_workers=len(devices))
    try:
        if main:
            signal.signal(signal.SIGTERM, on_sigterm)
        futures = [pool.submit(worker, device) for device in devices]
        return [f for future in futures for f in future.result()]
    except KeyboardInterrupt:  # Ctrl-C reaches the workers too (their runs save nothing): no new runs
        print("compare: interrupted; the unfinished runs resume when the same command runs again", flush=True)
        stop()
        raise
    except _Terminated:
        stop()
        pool.shutdown(wait=True, cancel_futures=True)
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        terminated = SIGTERMException()
        terminated.said = (  # what ``experiments.__main__`` prints
            "the runs under way stopped (each one's launcher.log says what it saved); the same command again "
            "resumes them"
        )
        raise terminated from None
    finally:
        if main:  # None: the handler before was not set from Python (the default)
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        pool.shutdown(wait=True, cancel_futures=True)


class _Terminated(Exception):
    """SIGTERM reached the local launcher's process."""


def launch_slurm(
    argv: list[str],
    jobs: list[tuple[str, int]],
    run_dir,
    options: SlurmOptions,
    folder: Path,
    cluster: str | None,
) -> list[Failure]:
    """The jobs as one submitit job array (``cluster``: None for SLURM, ``local`` for submitit's
    LocalExecutor), waited for; logs in ``folder`` (submitit's ``%j`` files)."""
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster or "slurm")
    executor.update_parameters(name="archbench-compare", **options.executor_parameters())
    env = own_env()
    with executor.batch():
        submitted = [executor.submit(submitit.helpers.CommandFunction(compare_command(argv, "--run", f"{model}:{seed}"), env=env))
                     for model, seed in jobs]  # fmt: skip
    ids = ", ".join(job.job_id for job in submitted)
    print(f"compare: {len(submitted)} jobs submitted ({ids}); logs in {folder}", flush=True)
    failures = []
    for (model, seed), job in zip(jobs, submitted, strict=True):
        try:
            job.result()
            print(f"{job_name(model, seed)}: finished (job {job.job_id})", flush=True)
        except Exception:  # submitit says the job failed; the run's own one-line error is in its stderr
            log = Path(job.paths.stderr)
            lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
            said = [line for line in lines if line.startswith("error:")]
            said = (
                said or [line.strip() for line in lines if line.lstrip().startswith("- ")][:1]
            )  # a parser's reason
            failures.append(
                Failure(model, seed, f"job {job.job_id}: " + (said[-1][:300] if said else "failed"), log)
            )
    return failures
