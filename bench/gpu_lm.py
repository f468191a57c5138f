"""GPU language-model training throughput: our GPT with the gpt2-small preset (124 M), bf16 autocast and
torch.compile, batch 8 x 1024 tokens (``--batch 8 32`` for more rows): tokens/s and model FLOPs utilisation (6 N + 12 L d T FLOPs per token, the
estimate LanguageModelTask logs, over the GPU's dense bf16 peak; target >= 40% on an H100). Needs a CUDA GPU: on a
CPU-only machine it says so and exits 0. Prints one JSON line per batch size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}  # dense, from vendor sheets
CONTEXT, STEPS, WARMUP = 1024, 20, 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, nargs="+", default=[8], help="one row per batch size")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"bench": "gpu_lm", "skipped": "needs a CUDA GPU; this machine has none"}))
        sys.exit(0)
    from lit_models.gpt import GPT

    torch.manual_seed(0)
    net = GPT(preset="gpt2-small").cuda().train()
    c = net.config
    params = sum(p.numel() for p in net.parameters())
    flops_per_token = 6 * params + 12 * c.n_layer * c.n_embd * CONTEXT
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-4, fused=True)
    compiled = torch.compile(net)
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    for batch in args.batch:
        x = torch.randint(0, c.vocab_size, (batch, CONTEXT), device="cuda")
        y = torch.randint(0, c.vocab_size, (batch, CONTEXT), device="cuda")
        times = []
        for i in range(WARMUP + STEPS):
            torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(compiled(x).flatten(0, 1).float(), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            torch.cuda.synchronize()
            if i >= WARMUP:
                times.append(time.perf_counter() - start)
        tokens_per_s = batch * CONTEXT / statistics.median(times)
        mfu = flops_per_token * tokens_per_s / (peak * 1e12) if peak else None
        print(json.dumps({"bench": "gpu_lm", "device": name, "model": "GPT gpt2-small", "params": params,
                          "batch": batch, "context": CONTEXT, "tokens_per_s": round(tokens_per_s),
                          "mfu": mfu and round(mfu, 4)}))  # fmt: skip


if __name__ == "__main__":
    main()
