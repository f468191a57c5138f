"""Generation speed: SmolLM2-135M in our decoder, a 32-token prompt, 256 new tokens, greedy.

1. Ours with the KV cache vs ours recomputing the whole sequence every step (the speed-up of the cache).
2. Ours (cache) vs transformers' ``generate`` on the same weights, at batch 1 and 8: the same tokens, and the
   ratio of tokens/s (ours / theirs), each the median of 3 runs taken alternately (single runs on this 2-core
   machine varied by 20%).

Needs ``python -m experiments data smollm2``. Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from lit_models.generation import generate
from lit_models.gpt import from_hf
from lit_models.gpt_weights import load_hf_causal_lm, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]

WEIGHTS = ROOT / "data" / "pretrained" / "smollm2-135m"
PROMPT_TOKENS, NEW_TOKENS, REPEATS = 32, 256, 3
TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in "
    "want of a wife. However little known the feelings or views of such a man may be on his first entering"
)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def ours(net, prompt, use_cache=True) -> torch.Tensor:
    return torch.cat(list(generate(net, prompt, NEW_TOKENS, context=2048, use_cache=use_cache)), dim=1)


def theirs(hf, prompt) -> torch.Tensor:
    out = hf.generate(prompt, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                      attention_mask=torch.ones_like(prompt))  # fmt: skip
    return out[:, prompt.shape[1] :]


def main() -> None:
    if not WEIGHTS.is_dir():
        print(json.dumps({"bench": "generation", "skipped": "python -m experiments data smollm2"}))
        return
    torch.manual_seed(0)
    hf = load_hf_causal_lm(WEIGHTS)
    tokenizer = load_tokenizer(WEIGHTS)
    net = from_hf(hf).eval()
    prompt = torch.tensor([tokenizer.encode(TEXT)[:PROMPT_TOKENS]])
    assert prompt.shape[1] == PROMPT_TOKENS
    result = {"bench": "generation", "model": "SmolLM2-135M-Instruct (Q4_1 GGUF, float32)", "threads": torch.get_num_threads(),
              "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS}  # fmt: skip
    with torch.inference_mode():
        ours(net, prompt[:, :8]), theirs(hf, prompt[:, :8])  # warm-up
        full, t_full = timed(lambda: ours(net, prompt, use_cache=False))
        for batch in (1, 8):  # ours and theirs alternating, REPEATS times each: the median time
            prompts = prompt.repeat(batch, 1)
            times = {"ours": [], "theirs": []}
            for _ in range(REPEATS):
                mine, t = timed(lambda p=prompts: ours(net, p))
                times["ours"].append(t)
                hf_tokens, t = timed(lambda p=prompts: theirs(hf, p))
                times["theirs"].append(t)
            t_mine, t_hf = statistics.median(times["ours"]), statistics.median(times["theirs"])
            if batch == 1:
                result["cache_speedup"] = round(t_full / t_mine, 2)
                result["cache_same_tokens"] = bool(torch.equal(mine, full))
            result[f"b{batch}_same_tokens"] = bool(torch.equal(mine, hf_tokens))
            result[f"b{batch}_tokens_per_s_ours"] = round(batch * NEW_TOKENS / t_mine, 1)
            result[f"b{batch}_tokens_per_s_transformers"] = round(batch * NEW_TOKENS / t_hf, 1)
            result[f"b{batch}_ratio"] = round(t_hf / t_mine, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
