"""GPU language-model training throughput: our GPT with the gpt2-small preset (124 M), bf16 autocast, batch 8 x 1024
tokens (``--batch 8 32`` for more rows): tokens/s and model FLOPs utilisation (6 N + 12 L d T FLOPs per token, the
estimate LanguageModelTask logs, over the GPU's dense bf16 peak; target >= 40% on an H100), one JSON line per
variant and batch size, each with its own model and compiled graphs (a second batch size through the same graph
would recompile it for dynamic shapes, a slower graph). Variants (``--variants``):

- ``eager``: no ``torch.compile``;
- ``compiled``: the net compiled and the cross-entropy outside it, in fp32 (what ``LanguageModelTask(compile=True)``
  did until 2026-11-26: ``nn.Module.compile`` of the net alone);
- ``task``: ``LanguageModelTask(compile=True)``'s loss: the net and the cross-entropy compiled as one graph (the
  fp32 logits never written out);
- ``fused``: the same written out here (one compiled function of the net and the cross-entropy);
- ``fused_pad``: ``fused`` with the vocabulary padded to 50,304 rows (nanoGPT's multiple of 64) and the pad logits
  left in the softmax, which changes the model (its losses and samples are over 50,304 tokens); the FLOPs
  counted are those of the 50,257-token model.

Needs a CUDA GPU: on a CPU-only machine it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}  # dense, from vendor sheets
CONTEXT, STEPS, WARMUP = 1024, 20, 5
VARIANTS = ("eager", "compiled", "task", "fused", "fused_pad")


def make_step(variant: str):
    """(net, loss function of (x, y)) for one variant."""
    from lit_models.gpt import GPT
    from lit_models.language_model import LanguageModelTask

    torch.manual_seed(0)
    net = GPT(preset="gpt2-small", vocab_size=50304 if variant == "fused_pad" else None).cuda().train()
    if variant == "task":
        task = LanguageModelTask(net, compile=True)
        task.setup("fit")
        return net, lambda x, y: task.compute_loss({"x": x, "y": y})[0]

    forward = torch.compile(net) if variant == "compiled" else net

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(forward(x).flatten(0, 1).float(), y.flatten())

    return net, torch.compile(loss) if variant.startswith("fused") else loss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[8], help="one row per batch size")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"bench": "gpu_lm", "skipped": "needs a CUDA GPU; this machine has none"}))
        sys.exit(0)
    from lit_models.gpt_config import preset_config

    c = preset_config("gpt2-small")
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    for variant in args.variants:
        for batch in args.batch:
            torch.compiler.reset()  # graphs compiled afresh for this batch size (static shapes)
            net, step_loss = make_step(variant)
            params = (
                sum(p.numel() for p in net.parameters()) - (net.config.vocab_size - c.vocab_size) * c.n_embd
            )
            flops_per_token = 6 * params + 12 * c.n_layer * c.n_embd * CONTEXT
            optimizer = torch.optim.AdamW(net.parameters(), lr=3e-4, fused=True)
            x = torch.randint(0, c.vocab_size, (batch, CONTEXT), device="cuda")
            y = torch.randint(0, c.vocab_size, (batch, CONTEXT), device="cuda")
            times = []
            for i in range(WARMUP + STEPS):
                torch.cuda.synchronize()
                start = time.perf_counter()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = step_loss(x, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                torch.cuda.synchronize()
                if i == 0:
                    first = time.perf_counter() - start
                if i >= WARMUP:
                    times.append(time.perf_counter() - start)
            tokens_per_s = batch * CONTEXT / statistics.median(times)
            mfu = flops_per_token * tokens_per_s / (peak * 1e12) if peak else None
            print(json.dumps({"bench": "gpu_lm", "device": name, "torch": torch.__version__,
                              "model": "GPT gpt2-small", "variant": variant, "params": params,
                              "batch": batch, "context": CONTEXT,
                              "tokens_per_s": round(tokens_per_s), "mfu": mfu and round(mfu, 4),
                              "first_step_s": round(first, 1), "loss": round(loss.item(), 3)}))  # fmt: skip
            del net, optimizer, step_loss
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
