"""Sparse attention patterns on a GPU: the boolean masks through SDPA that the blocks use today
(``lit_models.blocks.pattern_mask`` + ``blocks.attention``) against FlexAttention block masks of the same
patterns (``torch.nn.attention.flex_attention``, compiled), and full causal attention (flash) as the reference
cost. Then one training step of a small GPT with ``attention: local`` under each ``attention_kernel``.
Forward + backward milliseconds in bf16 per pattern and length, and the largest difference between the
two implementations' outputs (the same pattern must give the same numbers). Needs a CUDA GPU: on a CPU-only
machine it says so and exits 0 (``--smoke`` runs the parity check on the CPU at a small size). Prints one JSON
line.

    python bench/gpu_attention.py [--lengths 1024 4096 8192] [--window 256]
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

from lit_models.blocks import attention, pattern_mask  # noqa: E402

PATTERNS = ("local", "strided", "block")


def mask_mod(pattern: str, window: int):
    """The FlexAttention form of ``pattern_mask(pattern, ..., causal=True)``: the same rule, index by index."""

    def local(b, h, q, k):
        return (q - k < window) & (k <= q)

    def strided(b, h, q, k):
        return (((q - k) < window) | ((q - k) % window == 0)) & (k <= q)

    def block(b, h, q, k):
        return ((q // window == k // window) | (k % window == window - 1)) & (k <= q)

    return {"local": local, "strided": strided, "block": block}[pattern]


def timed_ms(step, steps: int, warmup: int, device: str) -> float:
    times = []
    for i in range(warmup + steps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def measure(length: int, window: int, args, device: str, dtype: torch.dtype, flex, steps: int) -> dict:
    from torch.nn.attention.flex_attention import create_block_mask

    shape = (args.batch, args.heads, length, args.head_dim)
    train = device == "cuda"  # FlexAttention has no backward on the CPU
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=train) for _ in range(3))
    grad = torch.randn(shape, device=device, dtype=dtype)

    def ms(fn) -> float | None:
        def step():
            for t in (q, k, v):
                t.grad = None
            fn().backward(grad)

        return round(timed_ms(step, steps, 3, device), 3) if train else None

    row = {"length": length, "full_causal_ms": ms(lambda: attention(q, k, v, is_causal=True))}
    positions = torch.arange(length, device=device)
    for pattern in PATTERNS:
        allowed = pattern_mask(pattern, positions, positions, window, causal=True)
        block_mask = create_block_mask(mask_mod(pattern, window), None, None, length, length, device=device)
        # with autograd on, as in the timing below: a no_grad call would be one more compiled graph
        reference = attention(q, k, v, allowed=allowed).detach()
        flexed = flex(q, k, v, block_mask=block_mask).detach()
        sdpa_ms = ms(lambda allowed=allowed: attention(q, k, v, allowed=allowed))
        flex_ms = ms(lambda block_mask=block_mask: flex(q, k, v, block_mask=block_mask))
        row[pattern] = {
            "sdpa_mask_ms": sdpa_ms,
            "flex_ms": flex_ms,
            "flex_speedup": sdpa_ms and round(sdpa_ms / flex_ms, 3),
            "max_abs_diff": float((reference.float() - flexed.float()).abs().max()),
            "density": round(float(allowed.float().mean()), 4),
        }
    return row


def gpt_step(kernel: str, length: int, window: int, steps: int) -> tuple[float, float]:
    """One training step (forward, loss, backward) of a 4-layer GPT with local attention in bf16 autocast, the
    attention run by ``kernel``: (median ms, the first step's loss). Same seed, same weights for both kernels."""
    from lit_models.gpt import GPT

    torch.manual_seed(0)
    net = GPT(vocab_size=256, seq_len=length, n_layer=4, n_head=6, n_embd=384, attention="local", window=window,
              attention_kernel=kernel).cuda()  # fmt: skip
    x = torch.randint(0, 256, (2, length + 1), device="cuda")
    losses = []

    def step():
        net.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = net(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten())
        loss.backward()
        losses.append(loss.item())

    return timed_ms(step, steps, 3, "cuda"), losses[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head_dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="parity only, on the CPU, at a small size")
    args = parser.parse_args()
    if args.smoke:
        device, dtype, lengths, window = "cpu", torch.float32, [64], 8
    elif not torch.cuda.is_available():
        print(json.dumps({"bench": "gpu_attention", "skipped": "needs a CUDA GPU; this machine has none"}))
        sys.exit(0)
    else:
        device, dtype, lengths, window = "cuda", torch.bfloat16, args.lengths, args.window
    from torch.nn.attention.flex_attention import flex_attention

    # one compiled graph per pattern (its mask rule) and length: more than dynamo's default limit of 8, past which
    # it would silently run FlexAttention's dense eager fallback (and run out of memory at long lengths)
    torch._dynamo.config.recompile_limit = 64
    flex = flex_attention if device == "cpu" else torch.compile(flex_attention, dynamic=False)
    result = {"bench": "gpu_attention", "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
              "torch": torch.__version__, "batch": args.batch, "heads": args.heads, "head_dim": args.head_dim,
              "window": window, "dtype": str(dtype).removeprefix("torch."), "rows": []}  # fmt: skip
    torch.manual_seed(0)
    for length in lengths:
        result["rows"].append(measure(length, window, args, device, dtype, flex, args.steps))
    if device == "cuda":  # the option as a model uses it: GPT(attention="local", attention_kernel=...)
        length = max(lengths)
        sdpa_ms, sdpa_loss = gpt_step("sdpa", length, window, args.steps)
        flex_ms, flex_loss = gpt_step("flex", length, window, args.steps)
        result["gpt_local_step"] = {"length": length, "batch": 2, "sdpa_ms": round(sdpa_ms, 3),
                                    "flex_ms": round(flex_ms, 3), "flex_speedup": round(sdpa_ms / flex_ms, 3),
                                    "loss_sdpa": sdpa_loss, "loss_flex": flex_loss}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
