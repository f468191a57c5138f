"""Decoding speed of the sequence-to-sequence models (``lit_models.seq2seq``), at the comparison's sizes
(``experiments/seq2seq/*.yaml``), 128 sources of 10 symbols, 24 output symbols each (no early end):

- greedy: each step from the decoder's state (the Transformer's KV cache, the GRUs' hidden state) vs decoding
  the whole prefix again at every step (the source encoded once in both);
- beam search, width 5: the source encoded once and its memory reordered with the hypotheses vs a full forward
  (encoder included) at every step, as calling ``net(x, lengths, prefix)`` in a loop does.

Output symbols/s (sources x steps / seconds), medians of 3, same outputs checked. Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_models.seq2seq import Bahdanau, GRUSeq2Seq, Seq2SeqTransformer, beam_decode, greedy_decode  # noqa: E402

SOURCES, LENGTH, STEPS, VOCAB, TARGETS, BOS = 128, 10, 24, 33, 73, 1
EOS = TARGETS  # never written: every output runs all STEPS


class Recompute(nn.Module):
    """The net without ``step``: every step decodes the whole prefix again."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def encode(self, x, lengths):
        return self.net.encode(x, lengths)

    def decode(self, prefix, memory):
        return self.net.decode(prefix, memory)


class ReEncode(nn.Module):
    """No memory kept: every step is a full forward, the encoder included."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def encode(self, x, lengths):
        return x, lengths

    def decode(self, prefix, memory):
        x, lengths = memory
        return self.net(x, lengths, prefix)


def timed(fn) -> tuple[float, list]:
    times, out = [], None
    for _ in range(3):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    torch.manual_seed(0)
    nets = {
        "transformer": Seq2SeqTransformer(
            VOCAB,
            TARGETS,
            d_model=96,
            nhead=4,
            num_encoder_layers=2,
            num_decoder_layers=2,
            dim_feedforward=384,
        ),  # fmt: skip
        "bahdanau": Bahdanau(VOCAB, TARGETS, hidden_size=128, attention_size=128),
        "gru": GRUSeq2Seq(VOCAB, TARGETS, hidden_size=192),
    }
    x = torch.randint(4, VOCAB, (SOURCES, LENGTH))
    lengths = torch.randint(4, LENGTH + 1, (SOURCES,))
    b = SOURCES // 4  # beams multiply the rows by 5
    xb, lb = x[:b], lengths[:b]
    result = {
        "bench": "seq2seq_decode",
        "sources": SOURCES,
        "steps": STEPS,
        "threads": torch.get_num_threads(),
    }
    with torch.no_grad():
        for name, net in nets.items():
            net.eval()
            row = {}
            t_cache, out_cache = timed(lambda net=net: greedy_decode(net, x, lengths, BOS, EOS, STEPS))
            t_full, out_full = timed(
                lambda net=net: greedy_decode(Recompute(net), x, lengths, BOS, EOS, STEPS)
            )
            row["greedy_state_symbols_per_s"] = round(SOURCES * STEPS / t_cache)
            row["greedy_recompute_symbols_per_s"] = round(SOURCES * STEPS / t_full)
            row["greedy_speedup"] = round(t_full / t_cache, 2)
            row["greedy_same_outputs"] = out_cache == out_full
            t_beam, out_beam = timed(lambda net=net: beam_decode(net, xb, lb, BOS, EOS, STEPS, width=5))
            t_re, out_re = timed(lambda net=net: beam_decode(ReEncode(net), xb, lb, BOS, EOS, STEPS, width=5))
            row["beam5_encoded_once_symbols_per_s"] = round(b * STEPS / t_beam)
            row["beam5_reencoding_symbols_per_s"] = round(b * STEPS / t_re)
            row["beam5_speedup"] = round(t_re / t_beam, 2)
            row["beam5_same_outputs"] = out_beam == out_re
            result[name] = row
    print(json.dumps(result))


if __name__ == "__main__":
    main()
