"""GPU training throughput: ViT-B/16, ResNet-34 and ResNet-50 with bf16-mixed autocast and channels-last, eager and
with torch.compile, ours (ViT-B/16, ResNet-34) and timm's side by side: images/s and model FLOPs utilisation (MFU,
3 x forward FLOPs per image over the GPU's dense bf16 peak). ``--modes compiled`` for the compiled rows alone.
Needs a CUDA GPU: on a CPU-only machine it says so and exits 0. Prints one JSON line per model and mode, as each
finishes (a run cut short keeps them).
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
BATCH, STEPS, WARMUP = 64, 20, 5


def forward_flops(model: torch.nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, 224, 224, device="cuda")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return float(counter.get_total_flops())


def images_per_second(model: torch.nn.Module, compile: bool) -> float:
    model = model.cuda().to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    compiled = torch.compile(model) if compile else model
    x = torch.randn(BATCH, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (BATCH,), device="cuda")
    times = []
    for i in range(WARMUP + STEPS):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(compiled(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize()
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    return BATCH / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modes", nargs="+", choices=("eager", "compiled"), default=["eager", "compiled"])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"bench": "gpu_throughput", "skipped": "needs a CUDA GPU; this machine has none"}))
        sys.exit(0)
    import timm

    from lit_models.resnet import ResNet
    from lit_models.vit import VisionTransformer

    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    models = {
        "vit_base_patch16_224 (ours)": lambda: VisionTransformer(1000),
        "vit_base_patch16_224 (timm)": lambda: timm.create_model("vit_base_patch16_224"),
        "resnet34 (ours)": lambda: ResNet(1000, depth=34),
        "resnet34 (timm)": lambda: timm.create_model("resnet34"),
        "resnet50 (timm)": lambda: timm.create_model("resnet50"),
    }
    for label, make in models.items():
        for mode in args.modes:
            torch.manual_seed(0)
            model = make().cuda()
            flops = forward_flops(model)
            rate = images_per_second(model, compile=mode == "compiled")
            mfu = 3 * flops * rate / (peak * 1e12) if peak else None
            print(json.dumps({"bench": "gpu_throughput", "device": name, "torch": torch.__version__,
                              "batch": BATCH, "model": label, "mode": mode, "images_per_s": round(rate, 1),
                              "mfu": mfu and round(mfu, 4)}), flush=True)  # fmt: skip
            del model
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
