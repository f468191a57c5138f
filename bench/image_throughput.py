"""Training throughput (images/s) of our ResNet-18 and ViT-S/16 vs timm's, same configuration, same run.

Each model trains for a few steps of SGD on random 3x224x224 batches (forward, cross-entropy, backward,
step) on this machine's device; ours and timm's alternate, and the median step time of 3 repeats is compared.
The architectures are the same tensor for tensor (the parity tests copy timm's weights into ours).
Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import time

import timm
import torch

from lit_models.resnet import ResNet
from lit_models.vit import VisionTransformer

BATCH, STEPS, WARMUP, REPEATS = 8, 4, 1, 3


def step_time(model: torch.nn.Module, device: torch.device) -> float:
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(BATCH, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (BATCH,), device=device)
    times = []
    for i in range(WARMUP + STEPS):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pairs = {
        "resnet18": (lambda: ResNet(1000), lambda: timm.create_model("resnet18")),
        "vit_small_patch16_224": (
            lambda: VisionTransformer(1000, embed_dim=384, depth=12, num_heads=6),
            lambda: timm.create_model("vit_small_patch16_224"),
        ),
    }
    result = {
        "bench": "image_throughput",
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    }
    for name, (ours_fn, timm_fn) in pairs.items():
        ours, theirs = ours_fn(), timm_fn()
        ours_t, timm_t = [], []
        for _ in range(REPEATS):
            ours_t.append(step_time(ours, device))
            timm_t.append(step_time(theirs, device))
        o, t = statistics.median(ours_t), statistics.median(timm_t)
        result[name] = {
            "ours_images_per_s": round(BATCH / o, 2),
            "timm_images_per_s": round(BATCH / t, 2),
            "ours_over_timm": round(t / o, 3),
        }
    result["target"] = 0.95
    print(json.dumps(result))


if __name__ == "__main__":
    main()
