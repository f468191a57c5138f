"""``Seq2SeqTask``: sequence-to-sequence training with teacher forcing and label smoothing, and validation / test
by decoding (greedy, or beam search with ``beam_width``): the error rates of what the model writes, not only the loss of what it is shown.

Metrics over a whole split (torchmetrics states, summed across processes):

- ``per``: the symbol (phoneme) error rate, edit distance over reference symbols (torchmetrics' edit distance
  with each symbol one character);
- ``wer``: the share of sequences (words, in grapheme-to-phoneme) with any error, i.e. 1 - exact match;
- ``loss``: cross-entropy per target symbol in nats (without label smoothing, so rows compare).

A source with several references (a word's alternate pronunciations) counts against the nearest one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import Metric
from torchmetrics.functional.text import edit_distance

from archbench.errors import ConfigError, DataError
from lit_models.seq2seq import beam_decode, greedy_decode
from lit_models.task import Task

BOS, EOS = 1, 2  # the datamodule's markers (datamodules.seq2seq)


def _as_text(ids: list[int]) -> str:
    """Ids as one character each, so that a character edit distance counts symbol edits."""
    return "".join(chr(0x100 + i) for i in ids)


class SequenceErrors(Metric):
    """Summed symbol edits, reference symbols, wrong sequences and sequences -> ``per``, ``wer``; with the
    summed cross-entropy (nats) and target symbols also ``loss`` per symbol. Sums, so that the split's values
    are exact under DDP (each process's shard added), whatever the batch sizes."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("edits", "symbols", "wrong", "sequences", "nats", "targets"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predictions: list[list[int]], references: list[list[list[int]]],
               nats: torch.Tensor | None = None, targets: torch.Tensor | None = None) -> None:  # fmt: skip
        if nats is not None:
            self.nats += nats.double()
            self.targets += targets.double()
        for prediction, refs in zip(predictions, references, strict=True):
            texts = [_as_text(r) for r in refs]
            distances = edit_distance([_as_text(prediction)] * len(refs), texts, reduction="none")
            best = int(distances.argmin())
            self.edits += float(distances[best])
            self.symbols += len(refs[best])
            self.wrong += float(distances[best] > 0)
            self.sequences += 1

    def compute(self) -> dict[str, torch.Tensor]:
        values = {
            "per": (self.edits / self.symbols.clamp(min=1)).float(),
            "wer": (self.wrong / self.sequences.clamp(min=1)).float(),
        }
        if self.targets > 0:
            values["loss"] = (self.nats / self.targets).float()
        return values


class Seq2SeqTask(Task):
    counts_tokens = False

    def __init__(
        self,
        net: nn.Module,
        task: str = "seq2seq",
        num_outputs: int | None = None,
        label_smoothing: float = 0.1,
        max_decode_length: int = 48,
        beam_width: int = 1,
        length_penalty: float = 1.0,
        **kwargs,
    ):
        """
        Args:
            net: The architecture (``lit_models.seq2seq``): ``encode``, ``decode`` and ``forward(x, lengths,
                target_in) -> (B, T, target_vocab_size)``.
            task: What the data is for; linked from the data, and it must be ``seq2seq``.
            num_outputs: The target vocabulary size; linked from the data.
            label_smoothing: Share of the target probability spread over the other symbols in training.
            max_decode_length: Longest output decoding writes (symbols, without markers); a reference longer
                than this warns at the start (its output is cut). With the Transformer, below its ``max_length``.
            beam_width: Hypotheses beam search keeps in validation and test; 1 decodes greedily.
            length_penalty: Beam search ranks finished outputs by log-probability / length ** this (0: raw
                sums, which favour short outputs).
        """
        if task != "seq2seq":
            raise ValueError(
                f"model: Seq2SeqTask needs sequence-pair data (datamodules.seq2seq.Seq2SeqDataModule), the data's "
                f"task is {task!r}"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing: {label_smoothing} is outside [0, 1)")
        if beam_width < 1 or max_decode_length < 1:
            raise ValueError(
                f"model.beam_width ({beam_width}) and model.max_decode_length ({max_decode_length}) must be >= 1"
            )
        limit = getattr(net, "max_length", None)  # the Transformer's positions; the GRUs have no limit
        if limit is not None and max_decode_length + 1 > limit:
            raise ConfigError(
                f"model.max_decode_length: {max_decode_length} symbols after <bos> do not fit the net's "
                f"max_length={limit} (model.net.init_args.max_length)"
            )
        super().__init__(net, **kwargs)
        self.val_errors = SequenceErrors()
        self.test_errors = SequenceErrors()
        self._nats: dict[str, list[float]] = {}

    @staticmethod
    def batch_size(batch: dict) -> int:
        return len(batch["x"])

    def check_data(self, data, stage: str) -> None:
        """Before the first step: the stage's longest pairs (``data.longest``) against what the net reads (its
        ``max_length``: the source, and ``<bos>`` then the target), and a warning when a reference is longer than
        decoding writes (``max_decode_length``: those outputs are cut, and ``per`` cannot reach 0)."""
        longest = getattr(data, "longest", {})
        limit, cut = getattr(self.net, "max_length", None), self.hparams.max_decode_length
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
        for split in (s for s in splits.get(stage, ()) if s in longest):
            (source, source_at), (target, target_at) = longest[split]["source"], longest[split]["target"]
            net = f"the net's max_length={limit} (model.net.init_args.max_length)"
            if limit is not None and source > limit:
                raise DataError(f"{source_at}: a source of {source} symbols is longer than {net}")
            if limit is not None and target + 1 > limit and split != "predict":  # predict reads no target
                raise DataError(f"{target_at}: a target of {target} symbols after <bos> is longer than {net}")
            if target > cut and split != "train":
                rank_zero_warn(
                    f"{target_at}: a target of {target} symbols is longer than model.max_decode_length={cut}: "
                    f"outputs are cut at {cut} symbols, so per cannot reach 0; raise --model.max_decode_length"
                )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None, target_in: torch.Tensor) -> torch.Tensor:
        return self.net(x, lengths, target_in)

    def _cross_entropy(self, batch: dict, smoothing: float, reduction: str = "mean"):
        target = batch["target"]
        logits = self(batch["x"], batch["lengths"], target[:, :-1])
        labels = target[:, 1:].masked_fill(target[:, 1:] == 0, -100)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
                               label_smoothing=smoothing, reduction=reduction)  # fmt: skip
        return loss, logits, (labels != -100).sum()

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        loss, logits, _ = self._cross_entropy(batch, self.hparams.label_smoothing)
        return loss, logits

    def decode(self, x: torch.Tensor, lengths: torch.Tensor | None) -> list[list[int]]:
        """Outputs for a batch of sources, greedy or by beam search (``beam_width``): one list of target ids (no
        markers) per source."""
        h = self.hparams
        if h.beam_width == 1:
            return greedy_decode(self.net, x, lengths, BOS, EOS, h.max_decode_length)
        return beam_decode(
            self.net, x, lengths, BOS, EOS, h.max_decode_length, h.beam_width, h.length_penalty
        )

    def _evaluate(self, batch: dict, stage: str) -> None:
        nats, _, symbols = self._cross_entropy(batch, 0.0, reduction="sum")
        outputs = self.decode(batch["x"], batch["lengths"])
        getattr(self, f"{stage}_errors").update(outputs, batch["references"], nats.detach(), symbols)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> list[tuple[str, str]]:
        """Each source as the model read it and what the model writes for it, as text (symbols joined by
        spaces, characters joined; a source symbol never seen in training shows as ``<unk>``)."""
        data = self.trainer.datamodule
        sources = [
            data.source_vocab.decode_text(x[:n].tolist())
            for x, n in zip(batch["x"], batch["lengths"], strict=True)
        ]
        written = [data.target_vocab.decode_text(ids) for ids in self.decode(batch["x"], batch["lengths"])]
        return list(zip(sources, written, strict=True))

    def _log_errors(self, stage: str) -> None:
        metric = getattr(self, f"{stage}_errors")
        self.log_dict({f"{stage}/{k}": v for k, v in metric.compute().items()}, prog_bar=stage == "val")
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_errors("val")
        super().on_validation_epoch_end()

    def on_test_epoch_end(self) -> None:
        self._log_errors("test")
        super().on_test_epoch_end()
