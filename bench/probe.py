"""The bias probe's speed on SmolLM2-135M (our GPT holding its weights, ``data/pretrained/smollm2-135m``, from
``python -m experiments data smollm2``): pairs/s scoring the first 96 CrowS-Pairs pairs in batches of 16
sentences (sorted by length) vs one sentence at a time; the same scores checked. Prints one JSON line (or says
what is missing and exits 0).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WEIGHTS = ROOT / "data" / "pretrained" / "smollm2-135m"
PAIRS = ROOT / "data" / "crows_pairs" / "crows_pairs_anonymized.csv"
N = 96


def main() -> None:
    if not WEIGHTS.is_dir() or not PAIRS.is_file():
        print(
            json.dumps(
                {
                    "bench": "probe",
                    "skipped": "needs `python -m experiments data smollm2` and `data crows_pairs`",
                }
            )
        )
        return
    from experiments.generate import load_from_weights
    from experiments.probe import causal_scores, read_crows_pairs

    torch.manual_seed(0)
    net, tokenizer, _ = load_from_weights(str(WEIGHTS))
    pairs = read_crows_pairs(PAIRS).head(N)
    sentences = pairs["stereotyping"].tolist() + pairs["other"].tolist()
    causal_scores(net, tokenizer, sentences[:4], batch_size=4)  # warm-up
    timings, scores = {}, {}
    for name, batch in (("batched_16", 16), ("one_at_a_time", 1)):
        start = time.perf_counter()
        scores[name] = causal_scores(net, tokenizer, sentences, batch_size=batch)
        timings[name] = time.perf_counter() - start
    print(json.dumps({
        "bench": "probe", "model": "SmolLM2-135M (our GPT)", "pairs": N, "threads": torch.get_num_threads(),
        "pairs_per_s_batched": round(N / timings["batched_16"], 2),
        "pairs_per_s_one_at_a_time": round(N / timings["one_at_a_time"], 2),
        "speedup": round(timings["one_at_a_time"] / timings["batched_16"], 2),
        "max_score_diff": float(np.abs(scores["batched_16"] - scores["one_at_a_time"]).max()),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
