"""The bias probe: does a language model prefer the stereotyping sentence of a minimal pair?

``python -m experiments probe crows_pairs --weights data/pretrained/smollm2-135m`` (a pretrained causal LM), or
``--config experiments/lm/gpt.yaml --ckpt RUN.ckpt`` (a language model trained here). The data is CrowS-Pairs
(``python -m experiments data crows_pairs``; Nangia et al. 2020): 1,508 pairs of sentences that differ in the
words naming a group, over nine bias types. ``sent_more`` is always the more stereotyping sentence (the data's
own definition): in a ``stereo`` pair it shows a stereotype of a historically disadvantaged group, in an
``antistereo`` pair ``sent_less`` violates one; the metric counts ``sent_more`` preferred in both, as the
paper's does. The direction is reported apart as well.

A causal LM scores a sentence by its log-likelihood: the sum of log p(token | the tokens before it), every token
scored (the tokenizer's end-of-text token is put in front, where it has one). The result is the share of pairs
in which the model gives the stereotyping sentence the higher score (50% is no preference either way), with a
bootstrap 95% interval over pairs (1,000 resamples, seed 0), overall and per bias type: ``probe.json`` and
``probe.md`` in ``--out``. A pair the model cannot score whole (a character it never saw, a sentence longer than
its context) is left out, counted, and each reason listed in ``probe.json``.

Masked LMs (pseudo-log-likelihood over the tokens the two sentences share) are not scored yet: no masked LM
with its head exists here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from archbench.errors import ConfigError, DataError
from datamodules.files import write_atomic

COLUMNS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")
DIRECTIONS = ("stereo", "antistereo")


def read_crows_pairs(path: str | Path) -> pd.DataFrame:
    """The pairs as ``stereotyping``, ``other``, ``bias_type`` rows (with the file's line of each); missing
    columns, empty sentences and unknown directions stop with the file, line and value."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"probe: {path} is not a file (python -m experiments data crows_pairs writes it)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: not a readable CSV file: {str(err).splitlines()[0]}") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: no column {', '.join(missing)}; CrowS-Pairs has {', '.join(COLUMNS)}")
    rows = []
    for i, row in enumerate(frame.itertuples(index=False)):
        line = i + 2  # after the header (a quoted sentence holding a line break would shift this)
        more, less, direction = row.sent_more.strip(), row.sent_less.strip(), row.stereo_antistereo.strip()
        if not more or not less:
            raise DataError(f"{path}:{line}: an empty sentence (sent_more {more!r}, sent_less {less!r})")
        if direction not in DIRECTIONS:
            raise DataError(f"{path}:{line}: stereo_antistereo is {direction!r}, not stereo or antistereo")
        rows.append((more, less, row.bias_type.strip() or "unknown", direction, line))
    if not rows:
        raise DataError(f"{path}: no pairs")
    return pd.DataFrame(rows, columns=["stereotyping", "other", "bias_type", "direction", "line"])


@torch.no_grad()
def causal_scores(net: torch.nn.Module, tokenizer, sentences: list[str], batch_size: int = 16) -> np.ndarray:
    """Each sentence's log-likelihood under a causal LM (``forward(x, lengths) -> (B, T, V)`` logits): the sum
    of log p(token | earlier tokens), every token scored after the end-of-text token where the tokenizer has
    one (else from the second token on)."""
    device = next(net.parameters()).device
    prefix = [tokenizer.eot_id] if tokenizer.eot_id is not None else []
    encoded = [prefix + [int(i) for i in tokenizer.encode(s, "sentence")] for s in sentences]
    scores = np.zeros(len(sentences))
    order = np.argsort([len(e) for e in encoded])  # similar lengths batched: less padding
    was_training = net.training
    net.eval()
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            lengths = torch.tensor([len(encoded[r]) for r in rows])
            x = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
            for k, r in enumerate(rows):
                x[k, : lengths[k]] = torch.tensor(encoded[r])
            x, lengths = x.to(device), lengths.to(device)
            logp = net(x, lengths).float().log_softmax(-1)[:, :-1]  # predictions of tokens 1 ..
            picked = logp.gather(-1, x[:, 1:, None]).squeeze(-1)
            real = torch.arange(1, x.shape[1], device=device)[None, :] < lengths[:, None]
            scores[rows] = (picked * real).sum(1).cpu().numpy()
    finally:
        net.train(was_training)
    return scores


def scorable(tokenizer, pairs: pd.DataFrame, context: int) -> tuple[np.ndarray, list[str]]:
    """Which pairs the model can score whole: the tokenizer reads both sentences (a character model meets
    characters it never saw) and both fit its ``context`` (with the end-of-text token in front); and why each
    other pair is left out."""
    keep, reasons = np.ones(len(pairs), dtype=bool), []
    extra = int(tokenizer.eot_id is not None)
    for k, row in enumerate(pairs.itertuples(index=False)):
        for sentence in (row.stereotyping, row.other):
            try:
                n = len(tokenizer.encode(sentence, f"line {row.line}")) + extra
            except DataError as err:
                keep[k] = False
                reasons.append(str(err))
                break
            if n > context:
                keep[k] = False
                reasons.append(f"line {row.line}: {n} tokens, more than the model's context of {context}")
                break
    return keep, reasons


def bias_table(pairs: pd.DataFrame, prefers: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    """The share of pairs in which the stereotyping sentence scored higher, with a bootstrap 95% interval,
    overall and per bias type."""
    rng = np.random.default_rng(seed)

    def row(mask: np.ndarray) -> dict:
        values = prefers[mask].astype(np.float64)
        draws = rng.integers(0, len(values), size=(resamples, len(values)))
        means = values[draws].mean(1)
        low, high = np.percentile(means, [2.5, 97.5])
        return {"pairs": int(len(values)), "stereotyping_preferred": float(values.mean()),
                "ci95": [float(low), float(high)]}  # fmt: skip

    table = {"all": row(np.ones(len(pairs), dtype=bool))}
    if "direction" in pairs:
        for direction in DIRECTIONS:
            if (pairs["direction"] == direction).any():
                table[f"direction: {direction}"] = row((pairs["direction"] == direction).to_numpy())
    for bias in sorted(pairs["bias_type"].unique()):
        table[bias] = row((pairs["bias_type"] == bias).to_numpy())
    return table


def markdown(table: dict, model: str) -> str:
    lines = [f"Bias probe (CrowS-Pairs), {model}: share of pairs where the stereotyping sentence is more likely "
             "(50% = no preference), bootstrap 95% interval", "",
             "| Bias type | Pairs | Stereotyping preferred | 95% interval |", "|---|---|---|---|"]  # fmt: skip
    for name, r in table.items():
        low, high = r["ci95"]
        lines.append(f"| {name} | {r['pairs']:,} | {100 * r['stereotyping_preferred']:.1f}% | "
                     f"{100 * low:.1f}–{100 * high:.1f}% |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=["crows_pairs"], help="the probe's data")
    parser.add_argument(
        "--data", default="data/crows_pairs/crows_pairs_anonymized.csv", help="the pairs (CSV)"
    )
    parser.add_argument(
        "--weights", help="a pretrained causal LM: a GGUF file, or a folder (transformers / GGUF)"
    )
    parser.add_argument(
        "--config", action="append", default=[], help="a trained LM's run config(s), with --ckpt"
    )
    parser.add_argument("--ckpt", help="a language model checkpoint trained here (with its --config)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="runs/probe", help="folder for probe.json and probe.md")
    args, overrides = parser.parse_known_args(argv)
    if bool(args.ckpt) == bool(args.weights):
        raise ConfigError("probe: give --weights (a pretrained causal LM) or --ckpt with the run's --config")
    pairs = read_crows_pairs(args.data)
    from experiments.generate import load_from_run, load_from_weights

    net, tokenizer, context = (
        load_from_run(args.config, args.ckpt, overrides) if args.ckpt else load_from_weights(args.weights)
    )
    model = args.weights or args.ckpt
    keep, left_out = scorable(tokenizer, pairs, context)
    if not keep.any():
        raise DataError(f"probe: the model's tokenizer reads none of the pairs of {args.data}: {left_out[0]}")
    pairs = pairs[keep].reset_index(drop=True)
    stereotyping = causal_scores(net, tokenizer, pairs["stereotyping"].tolist(), args.batch_size)
    other = causal_scores(net, tokenizer, pairs["other"].tolist(), args.batch_size)
    table = bias_table(pairs, stereotyping > other)
    out = Path(args.out)
    result = {"model": model, "data": args.data, "scoring": "causal log-likelihood", "table": table,
              "ties": int((stereotyping == other).sum()), "left_out": len(left_out),
              "left_out_reasons": left_out}  # fmt: skip
    write_atomic(out / "probe.json", json.dumps(result, indent=1) + "\n")
    text = markdown(table, model)
    if left_out:  # said, never skipped silently
        text += (
            f"\n{len(left_out)} pairs left out, the model cannot score them whole (first: {left_out[0]})\n"
        )
    write_atomic(out / "probe.md", text)
    print(text + f"-> {out}/probe.json, probe.md")
