"""FLOPs measured, not estimated: ``torch.utils.flop_counter.FlopCounterMode`` counts the matmuls,
convolutions and attention of one real forward and backward (2 FLOPs per multiply-add; element-wise work is
not counted, as in the usual 6N estimate).

torch's counter knows the CUDA attention kernels but not the CPU's fused one
(``_scaled_dot_product_flash_attention_for_cpu``, which SDPA takes on the CPU), nor the CPU's oneDNN LSTM
layer (``mkldnn_rnn_layer``, an unpacked LSTM's path), nor cuDNN's fused RNN (``_cudnn_rnn``, every
``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` on a GPU), so formulas are given for those too. Like torch's, the
attention formulas count the full score matrix: a causal or sparse mask does not lower them.
"""

from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count


def _cpu_attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def _onednn_rnn_layer(input, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    """One layer and direction of an LSTM by oneDNN: every time step of every sequence multiplies the input
    by w_ih (gates x input) and the state by w_hh (gates x hidden)."""
    steps = math.prod(input[:-1])
    return 2 * steps * (w_ih[0] * w_ih[1] + w_hh[0] * w_hh[1])


def _onednn_rnn_layer_backward(input, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    return 2 * _onednn_rnn_layer(input, w_ih, w_hh)  # gradients of the inputs and of the weights


def _cudnn_rnn(input, weight, *args, out_shape=None, **kwargs) -> int:
    """All layers and directions of a cuDNN RNN, LSTM or GRU: every time step of every sequence multiplies by
    each weight matrix of each layer (w_ih: gates x layer input, w_hh: gates x hidden, and an LSTM's
    projection w_hr). The input is (T, B, in), (B, T, in) or packed (steps, in): every row but the last
    dimension is a time step of one sequence, and each layer runs the same steps."""
    steps = math.prod(input[:-1])
    return 2 * steps * sum(w[0] * w[1] for w in weight if len(w) == 2)  # the 1-D entries are biases


def _cudnn_rnn_backward(input, weight, *args, out_shape=None, **kwargs) -> int:
    """cuDNN's data pass (every layer's input and state gradients, the first layer's too: cuDNN computes them
    whether or not the input needs one, where the CPU's autograd skips them) and, when the weights train
    (``output_mask[3]``), its weight pass: each about the forward's FLOPs."""
    output_mask = kwargs.get("output_mask", args[-1] if args else None)
    weights_train = output_mask is None or bool(output_mask[3])
    return (2 if weights_train else 1) * _cudnn_rnn(input, weight)


aten = torch.ops.aten
KERNELS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
    aten.mkldnn_rnn_layer: _onednn_rnn_layer,
    aten.mkldnn_rnn_layer_backward: _onednn_rnn_layer_backward,
    aten._cudnn_rnn: _cudnn_rnn,
    aten._cudnn_rnn_backward: _cudnn_rnn_backward,
}


def flop_counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, custom_mapping=KERNELS)


class FlopsTally:
    """Training FLOPs of a fit, summed as it goes: each measurement (the forward and backward FLOPs of one
    batch, counted at the first batch of every epoch) stands for the batches trained until the next one. A
    step's cost can change between epochs: a frozen backbone's features read from a cache after the first
    epoch, ACT's halting steps as the model learns. Kept in checkpoints, so a resumed run counts its whole
    trajectory."""

    def __init__(self):
        self.segments: list[tuple[int, float]] = []  # (batches trained when measured, FLOPs per batch)
        self.batches = 0
        self.complete = True  # False after resuming a checkpoint that kept no tally: its batches are unknown

    def measured(self, per_batch: float) -> None:
        if self.segments and self.segments[-1][0] == self.batches:
            self.segments[-1] = (self.batches, per_batch)  # measured again before a batch was trained
        else:
            self.segments.append((self.batches, per_batch))

    def total(self) -> float | None:
        """FLOPs of the batches trained (this process's); None when nothing was measured or some batches were
        trained before the tally existed."""
        if not self.segments or not self.complete:
            return None
        ends = [start for start, _ in self.segments[1:]] + [self.batches]
        return float(sum(per * (end - start) for (start, per), end in zip(self.segments, ends, strict=True)))

    def state_dict(self) -> dict:
        return {
            "segments": [list(s) for s in self.segments],
            "batches": self.batches,
            "complete": self.complete,
        }

    def load_state_dict(self, state: dict | None) -> None:
        """A checkpoint's tally; None (a checkpoint from before tallies) leaves the total unknown."""
        if state is None:
            self.segments, self.batches, self.complete = [], 0, False
            return
        self.segments = [(int(start), float(per)) for start, per in state["segments"]]
        self.batches = int(state["batches"])
        self.complete = bool(state.get("complete", True))
