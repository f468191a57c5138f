"""The comparison's outputs: results.json, results.md (the table) and comparison.png."""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import Counter
from pathlib import Path

import matplotlib

from datamodules.files import write_atomic

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_ORDER = [
    "pearson",
    "spearman",
    "r2",
    "mse",
    "acc",
    "f1",
    "ece",
    "coverage",
    "selective_acc",
    "per",
    "wer",
    "bpc",
    "ppl",
    "loss",
]
_NAMES = {  # every metric the tasks log at test time, by its key after "test/"
    "pearson": "Pearson r",
    "spearman": "Spearman",
    "r2": "R²",
    "mse": "MSE",
    "acc": "Accuracy",
    "f1": "Macro-F1",
    "ece": "ECE",
    "coverage": "Coverage",
    "selective_acc": "Selective accuracy",
    "per": "PER",
    "wer": "WER",
    "bpc": "Bits per character",
    "ppl": "Perplexity",
    "loss": "Loss (nats)",
    "act/steps": "Ponder steps",
    "moe/entropy": "Expert-use entropy",
}


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation; the std is None for a single value (no spread was measured)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def summarize(runs: list[dict], metric: str) -> dict:
    """Per model: parameter count, mean and std over seeds of every test metric, mean time and throughput."""
    summary = []
    for model in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == model]
        row = {"model": model, "params": mine[0]["params"], "seeds": len(mine)}
        row["params_active"] = mine[0].get("params_active", mine[0]["params"])
        for key in ("flops_forward_per_example", "flops_train"):  # measured per run (ACT's steps vary)
            measured = [r[key] for r in mine if r.get(key) is not None]
            row[key] = statistics.fmean(measured) if measured else None
        evaluated = [
            {**r.get("val", {}), **r["test"]} for r in mine
        ]  # val: with ``validate`` (best checkpoint)
        for key in sorted({k for e in evaluated for k in e}):
            values = [e[key] for e in evaluated if key in e]
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(values)
        row["train_seconds"], row["train_seconds_std"] = _mean_std([r["train_seconds"] for r in mine])
        measured = [r["throughput"] for r in mine if r.get("throughput") is not None]
        row["throughput"] = statistics.fmean(measured) if measured else None
        tokens = [r["tokens_per_sec"] for r in mine if r.get("tokens_per_sec") is not None]
        if tokens:
            row["tokens_per_sec"] = statistics.fmean(tokens)
        row["peak_memory_mb"] = max(r["peak_memory_mb"] for r in mine)
        epochs = [r["epochs"] for r in mine if r.get("epochs") is not None]
        row["epochs"] = statistics.fmean(epochs) if epochs else None
        summary.append(row)
    ceilings = [r["noise_ceiling"] for r in runs if r.get("noise_ceiling") is not None]
    report = {"metric": metric, "runs": runs, "summary": summary}
    if ceilings:
        report["noise_ceiling"] = ceilings[0]
    return report


def markdown_table(report: dict) -> str:
    summary = report["summary"]
    keys = {
        k[: -len("_mean")]
        for row in summary
        for k in row
        if k.startswith(("test/", "val/")) and k.endswith("_mean") and _in_table(k)
    }
    main = report["metric"]
    rank = {name: i for i, name in enumerate(_ORDER)}
    keys = sorted(
        keys, key=lambda k: (k != main, k.startswith("val/"), rank.get(k.split("/", 1)[1], len(rank)), k)
    )
    active = any(row.get("params_active", row["params"]) != row["params"] for row in summary)
    heads = ["Model", "Params"] + ["Active params"] * active + [_column(k) for k in keys]
    heads += ["FLOPs/example (fwd)", "Train FLOPs", "Epochs", "Train time (s)", "Throughput (samples/s)"]
    per_token = any("tokens_per_sec" in row for row in summary)
    heads += ["Tokens/s"] * per_token + ["Peak memory (MB)"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in summary:
        cells = [row["model"], f"{row['params']:,}"] + [
            f"{row.get('params_active', row['params']):,}"
        ] * active
        cells += [_cell(row.get(k + "_mean"), row.get(k + "_std")) for k in keys]
        cells += [
            _number(row.get("flops_forward_per_example"), ".3g"),
            _number(row.get("flops_train"), ".3g"),
        ]
        # with its spread, as the metrics have theirs (trial 34: a bare mean of 7.8 s and 0.22 s)
        seconds, spread = row["train_seconds"], row.get("train_seconds_std")
        time = _seconds(seconds) + (f" ± {_seconds(spread)}" if spread is not None else "")
        cells += [_number(row.get("epochs"), ".3g"), time]
        cells += [_rate(row.get("throughput"))]
        cells += [_rate(row.get("tokens_per_sec"))] * per_token + [f"{row['peak_memory_mb']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    counts = {row["model"]: row["seeds"] for row in summary}
    planned = report.get("seeds_planned") or max(counts.values(), default=0)
    seeds = planned if set(counts.values()) == {planned} else None
    if seeds is None:  # a run failed or was left out: each row's count, not one that is wrong for some
        each = ", ".join(f"{m} {c} of {planned}" for m, c in counts.items())
        spread = f"Mean ± std over the seeds each row has ({each}; one: no spread measured)"
    else:
        spread = f"Mean ± std over {seeds} seeds" if seeds > 1 else "One seed (no spread measured)"
    final = [r for r in report.get("runs", []) if r.get("tested") == "final"]
    if not final:
        notes = [f"{spread} per model; test metrics of the best-validation checkpoint."]
    elif len(final) == len(report["runs"]):
        notes = [
            f"{spread} per model; test metrics of the final weights (no validation ran, so no best checkpoint)."
        ]
    else:
        names = ", ".join(dict.fromkeys(f"{r['model']} (seed {r['seed']})" for r in final))
        notes = [f"{spread} per model; test metrics of the best-validation checkpoint, but of the final weights for "
                 f"{names}: no validation ran there."]  # fmt: skip
    if any(k.startswith("val/") for k in keys):
        notes.append("Val: the validation split, evaluated with the same checkpoint.")
    notes.append(
        "FLOPs counted by torch's FlopCounterMode (matmuls and attention, 2 per multiply-add): the tested model's "
        "forward on the first test batch; train FLOPs: the forward and backward of each epoch's first batch times "
        "that epoch's batches, summed."
    )
    budgeted = [r for r in report.get("runs", []) if r.get("budget_flops")]
    if budgeted:  # matched compute: the rows' steps differ by design, and the table says why
        steps: dict[str, list[int]] = {}
        for r in budgeted:
            steps.setdefault(r["model"], []).append(r["budget_steps"])
        shown = ", ".join(
            f"{m} {min(s):,}" + (f"–{max(s):,}" if max(s) != min(s) else "") for m, s in steps.items()
        )
        short = [f"{r['model']} seed {r['seed']} ({r['steps']:,} of {r['budget_steps']:,} steps)" for r in budgeted
                 if r.get("steps") is not None and r["steps"] < r["budget_steps"]]  # fmt: skip
        notes.append(
            f"Matched compute: each run trained for the whole steps that fit in {budgeted[0]['budget_flops']:.3g} "
            f"training FLOPs (compare's budget_flops, counted as above; its Train FLOPs are at most that), so the rows "
            f"train for different steps: {shown}."
            + (
                f" Stopped before their budget by the validation rule (early stopping), so trained on less compute "
                f"than the others: {', '.join(short)}."
                if short
                else ""
            )  # fmt: skip
        )
    missing = report.get("missing") or []
    if missing:
        notes.append("Not in the table: " + "; ".join(f"{m['model']} seed {m['seed']} ({m['why']})" for m in missing)
                     + ".")  # fmt: skip
    uneven = []
    for row in summary:
        times = [r["train_seconds"] for r in report.get("runs", []) if r["model"] == row["model"]]
        if len(times) > 1 and max(times) > 2 * min(times):
            uneven.append(f"{row['model']} ({_seconds(min(times))}–{_seconds(max(times))} s)")
    # trial 34: the first run of an architecture in a process was 36x the second, for the same steps
    if uneven:
        notes.append(f"Train time differs more than 2x between the seeds of {', '.join(uneven)}: one-time costs (the "
                     "first run of an architecture in a process sets up its kernels) weigh on short runs.")  # fmt: skip
    measured = Counter(r["model"] for r in report.get("runs", []) if r.get("throughput") is not None)
    partly = [f"{row['model']} {measured[row['model']]} of {row['seeds']}" for row in summary
              if 0 < measured[row["model"]] < row["seeds"]]  # fmt: skip
    if partly:  # a mean over fewer runs than the row's other columns: said
        notes.append("Throughput over fewer runs than the row's seeds (a run that trained fewer batches than the "
                     f"window, as a resumed one can, has none): {', '.join(partly)}.")  # fmt: skip
    if any(row.get("throughput") is None for row in summary):
        notes.append(
            "Throughput –: the run trained fewer batches than compare's `throughput_window` (100 unless set), "
            "which Lightning's ThroughputMonitor averages over; a smaller window measures short runs."
        )
    if report.get("peak_memory_shared"):
        notes.append(
            "Peak memory: the process's peak resident memory; the rows ran one after another in one process, so "
            "memory an earlier row freed but the process kept counts toward later rows (`--launcher local` runs "
            "each in a process of its own)."
        )
    if active:
        notes.append(
            "Active params: what one token runs through (a Mixture of Experts uses top_k of its experts)."
        )
    if "tuning" in report:
        tuned = report["tuning"]
        first = next(iter(tuned.values()))
        best = "; ".join(
            f"{model}: " + ", ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in t["params"].items())
            for model, t in tuned.items()
        )
        counts = {model: t["trials"] for model, t in tuned.items()}
        n = first["trials"]
        budget = (f"with the same budget ({n} trial{'s' * (n != 1)} on {first['metric']})" if len(set(counts.values())) == 1
                  else f"on {first['metric']}, with other budgets: {', '.join(f'{m} {c}' for m, c in counts.items())} "
                       "trials")  # fmt: skip
        failed = [f"{model} {t['trials_failed']}" for model, t in tuned.items() if t.get("trials_failed")]
        rerun = f"; failed trials, run again and not counted: {', '.join(failed)}" if failed else ""
        notes.append(f"Each row tuned first {budget}{rerun}; its best settings then ran every seed: {best}.")
    made = _made_at(report.get("runs", []), report.get("provenance"))
    if made:
        notes.append(made)
    if "noise_ceiling" in report:
        notes.append(
            f"Noise ceiling (Pearson r of noiseless vs noisy test labels): {report['noise_ceiling']:.3f}."
        )
    return "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"


def _made_at(runs: list[dict], provenance: dict | None) -> str | None:
    """A note when the table's runs were not all made by this code: at different commits, or all at another
    commit than the command that wrote the table (a re-run keeps finished runs, made by the code of their time);
    a commit with uncommitted changes counts apart. Runs of versions that did not record it are left out."""
    commits: dict[str, list[str]] = {}
    for r in runs:
        if r.get("git_commit"):
            made = r["git_commit"][:7] + (" with uncommitted changes" if r.get("git_dirty") else "")
            commits.setdefault(made, []).append(f"{r['model']} seed {r['seed']}")
    now = (provenance or {}).get("git_commit")
    if now:
        now = now[:7] + (" with uncommitted changes" if provenance.get("git_dirty") else "")
    if len(commits) < 2 and (not commits or now is None or now in commits):
        return None
    groups = "; ".join(f"{made}: {', '.join(names)}" for made, names in commits.items())
    head = (
        f"Not every run was made by this command's code ({now})"
        if now
        else f"Runs made at {len(commits)} commits"
    )
    return f"{head}: a re-run keeps finished runs. By commit: {groups}."


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _in_table(key: str) -> bool:
    """Per-layer expert shares and per-difficulty ponder steps stay in results.json (and the ponder plot)."""
    return not any(part in key for part in ("/moe/layer", "/act/share_", "/act/steps_at_difficulty_"))


def _column(key: str) -> str:
    stage, name = key.split("/", 1)
    name = _NAMES.get(name, name)
    if stage != "val":
        return name
    return f"Val {name if name[:2].isupper() else name[0].lower() + name[1:]}"  # "Val ECE", "Val accuracy"


def _number(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _rate(value: float | None) -> str:
    """A throughput: whole numbers, or two decimals below 10 (a 135 M model trains 0.33 samples/s here)."""
    return _number(value, ",.0f" if value is None or value >= 10 else ".2f")


def _seconds(value: float) -> str:
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def _cell(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"  # a metric this row does not have (ponder steps of a model without ACT)
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _val_curve(metrics_csv: str, key: str) -> list[tuple[int, float]]:
    """(training steps done, value) of each validation: Lightning writes a validation after N steps at step N - 1
    of metrics.csv (its last training step's index), plotted at N (trial 19: each point one step early)."""
    if not Path(metrics_csv).is_file():
        return []
    with open(metrics_csv, newline="") as f:
        return [(int(r["step"]) + 1, float(r[key])) for r in csv.DictReader(f) if r.get(key)]


def plot(report: dict, path: Path | io.BytesIO) -> None:
    metric = report["metric"]
    val_key = metric.replace("test/", "val/", 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, row in enumerate(report["summary"]):
        color = f"C{i}"
        for j, run in enumerate(r for r in report["runs"] if r["model"] == row["model"]):
            curve = _val_curve(run.get("metrics_csv", ""), val_key)
            if curve:
                steps, values = zip(*curve, strict=True)
                left.plot(
                    steps, values, color=color, alpha=0.8, marker=".", label=row["model"] if j == 0 else None
                )
    left.set(xlabel="training steps done", ylabel=val_key, title="Validation curves (one line per seed)")
    left.grid(alpha=0.3)
    if left.lines:
        left.legend()
    else:  # no run logged the metric at validation (runs kept without their logs, a metric only tested)
        left.text(0.5, 0.5, f"no {val_key} logged", ha="center", va="center", transform=left.transAxes)
    names = [row["model"] for row in report["summary"]]
    means = [row.get(f"{metric}_mean", float("nan")) for row in report["summary"]]
    stds = [row.get(f"{metric}_std") or 0.0 for row in report["summary"]]
    right.bar(names, means, yerr=stds, capsize=6, color=[f"C{i}" for i in range(len(names))])
    if "noise_ceiling" in report:
        right.axhline(report["noise_ceiling"], color="k", linestyle="--", label="noise ceiling")
        right.legend(loc="lower right")
    right.set(ylabel=metric, title=f"{metric}: mean ± std over seeds")
    right.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def plot_ponder(report: dict, path: Path | io.BytesIO) -> bool:
    """Mean ACT steps per example against its difficulty (test split), one line per model; False if no run
    measured them."""
    prefix = "test/act/steps_at_difficulty_"
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    drawn = False
    for i, row in enumerate(report["summary"]):
        points = sorted((int(k[len(prefix) : -len("_mean")]), v) for k, v in row.items()
                        if k.startswith(prefix) and k.endswith("_mean"))  # fmt: skip
        if points:
            ax.plot(*zip(*points, strict=True), marker=".", color=f"C{i}", label=row["model"])
            drawn = True
    ax.set(xlabel="difficulty (the data's measure, e.g. non-zero entries)", ylabel="mean ponder steps",
           title="Adaptive computation: steps against difficulty (test)")  # fmt: skip
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return drawn


def write_outputs(report: dict, out: Path, metric: str) -> str:
    table = markdown_table(report)
    png = io.BytesIO()
    plot(report, png)
    write_atomic(out / "comparison.png", png.getvalue())
    ponder = io.BytesIO()
    if plot_ponder(report, ponder):
        write_atomic(out / "ponder.png", ponder.getvalue())
    else:
        (out / "ponder.png").unlink(missing_ok=True)  # an earlier comparison's, in this folder
    write_atomic(out / "results.md", table)
    write_atomic(out / "results.json", json.dumps(report, indent=2) + "\n")
    return table
