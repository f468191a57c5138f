"""FLOPs counted on a GPU against the CPU's count of the same module and input: cuDNN's fused RNN kernels
(``_cudnn_rnn``, formula in ``lit_models/flops.py``) and SDPA's CUDA attention. A check, not a timing: equal
counts mean compare's FLOPs columns mean the same on either device. Needs a CUDA GPU: on a CPU-only machine it
says so and exits 0. Prints one JSON line.

    python bench/gpu_flops.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_models.blocks import MultiheadSelfAttention  # noqa: E402
from lit_models.checks import measured_flops  # noqa: E402


def counts(module: nn.Module, x: torch.Tensor, device: str) -> tuple[int, int]:
    module, x = module.to(device), x.to(device)
    first = (
        (lambda: module(x)[0].float().sum()) if isinstance(module, nn.RNNBase) else lambda: module(x).sum()
    )
    return measured_flops(module, first)


def main() -> None:
    if not torch.cuda.is_available():
        print(json.dumps({"bench": "gpu_flops", "skipped": "needs a CUDA GPU; this machine has none"}))
        return
    torch.manual_seed(0)
    sequences = torch.randn(8, 50, 16)
    modules = {
        "lstm": (nn.LSTM(16, 64, num_layers=2, bidirectional=True, batch_first=True), sequences),
        "gru": (nn.GRU(16, 64, batch_first=True), sequences),
        "rnn": (nn.RNN(16, 64, batch_first=True), sequences),
        "attention": (MultiheadSelfAttention(64, 4), torch.randn(8, 50, 64)),
    }
    result = {"bench": "gpu_flops", "device": torch.cuda.get_device_name()}
    for name, (module, x) in modules.items():
        cpu, cuda = counts(module, x, "cpu"), counts(module, x, "cuda")
        result[name] = {
            "cpu_forward": cpu[0],
            "cuda_forward": cuda[0],
            "cpu_train": cpu[1],
            "cuda_train": cuda[1],
        }
    result["same_forward"] = all(
        v["cpu_forward"] == v["cuda_forward"] for k, v in result.items() if k in modules
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
