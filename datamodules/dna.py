"""One-hot DNA for sequence models: ``DNADataModule``.

Sequences are held as one byte per base (a :class:`~datamodules.storage.RaggedStore`, memory-mapped for an
encoded folder) and travel to the device as padded codes ``(B, L)`` uint8; they become float one-hot
``(B, L, 4)`` there (N and padding are all-zero rows), with ``lengths`` ``(B,)``. A batch is a dict: ``x``
(B, L, 4), ``lengths`` (B,), ``y`` (B,), and ``x_rc`` when test-time reverse-complement averaging is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from archbench.errors import DataError
from datamodules.dna_io import (
    ALPHABET,
    COMPLEMENT,
    N_CODE,
    NOT_A_CLASS_ID,
    OnBadLine,
    not_class_ids,
    read_dna,
)
from datamodules.dna_simulator import noise_ceiling, simulate_splits
from datamodules.files import not_found
from datamodules.sampling import SplitLoaders, check_loader_options, make_loader
from datamodules.splits import held_out_sizes, hold_out
from datamodules.storage import RaggedCollate, RaggedDataset, RaggedStore, warn_shared

Task = Literal["regression", "classification"]


@dataclass
class Simulation:
    """The built-in benchmark, used when no ``train_path`` is given (see ``dna_simulator``)."""

    n_train: int = 20_000
    n_val: int = 2_000
    n_test: int = 2_000
    seq_len: int = 250
    noise_std: float = 0.7
    seed: int = 0


_ONE_HOT = torch.eye(5)[:, :4]  # code -> row; N (4) is all zeros
_COMPLEMENT = torch.from_numpy(COMPLEMENT)


def one_hot(codes: torch.Tensor) -> torch.Tensor:
    """(B, L) uint8 codes -> (B, L, 4) float one-hot; N and padding are zero rows."""
    return _ONE_HOT.to(codes.device)[codes.long()]


def reverse_complement(codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse-complement each sequence within its own length; padding stays at the end."""
    positions = torch.arange(codes.shape[1], device=codes.device)
    source = (lengths[:, None] - 1 - positions).clamp(min=0)
    flipped = _COMPLEMENT.to(codes.device)[codes.gather(1, source).long()]
    return torch.where(positions < lengths[:, None], flipped, torch.full_like(flipped, N_CODE))


class DNADataModule(SplitLoaders, L.LightningDataModule):
    SAVED = ("statistics",)

    def __init__(
        self,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        predict_path: str | None = None,
        checkpoint: str | None = None,
        sequence_column: str = "sequence",
        label_column: str = "label",
        on_bad_line: OnBadLine = "error",
        task: Task = "regression",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        simulation: Simulation | None = None,
        batch_size: int = 64,
        global_batch_size: int | None = None,
        num_workers: int = 0,
        bucket_by_length: bool = False,
        reverse_complement: bool = False,
        test_time_reverse_complement: bool = False,
    ):
        """
        Args:
            train_path: Training file (plain text ``SEQUENCE LABEL``, CSV, TSV or Parquet; gzip allowed) or an
                encoded folder (``python -m experiments data encode``, memory-mapped). Empty: the built-in
                simulated benchmark (see ``simulation``).
            val_path: Validation file. Empty: ``val_fraction`` of the training file, split by ``split_seed``.
            test_path: Test file. Empty: ``test_fraction`` of the training file, split by ``split_seed``.
            predict_path: File of sequences (labels optional) for ``predict``. Empty: the test set.
            checkpoint: A trained model's checkpoint, for ``predict`` with a ``predict_path``, and ``test`` (or
                ``predict``) with a ``test_path`` and no ``predict_path``: the label statistics, class count and
                sequence length come from it (the length raised to the longest sequence read, as reading the data with the rest did,
                with a warning), and the training files are not read (they need not exist). ``predict`` and
                ``test`` with ``--ckpt_path FILE`` set it.
            sequence_column: Column of sequences in CSV/TSV/Parquet files.
            label_column: Column of labels in CSV/TSV/Parquet files.
            on_bad_line: ``error`` stops at the first bad record; ``skip`` drops bad records and says how many.
            task: ``regression`` (float labels) or ``classification`` (integer class ids 0..K-1).
            val_fraction: Share of the training file held out for validation when no ``val_path``.
            test_fraction: Share of the training file held out for testing when no ``test_path``.
            split_seed: Seed of the held-out splits (the training order follows the run's seed).
            simulation: Settings of the built-in benchmark.
            batch_size: Examples per batch (per device).
            global_batch_size: Examples per optimizer step over all processes and accumulated batches
                (split into ``batch_size`` per device; it must divide): the optimisation stays the same when
                the device count changes.
            num_workers: DataLoader worker processes.
            bucket_by_length: Batch training sequences of similar length together (less padding).
            reverse_complement: Train on a random strand of each sequence (augmentation).
            test_time_reverse_complement: Average predictions over both strands at validation, test and predict.
        """
        super().__init__()
        if on_bad_line not in ("error", "skip"):
            raise DataError(f"data.on_bad_line: {on_bad_line!r} is not one of 'error', 'skip'")
        self.save_hyperparameters()
        check_loader_options(self.hparams)
        self.simulation = simulation or Simulation()
        self.splits: dict[str, RaggedStore] | None = None
        self.noise_ceiling: float | None = None
        self._state = self._checkpoint_state(checkpoint, predict_path, test_path)
        self._stats: dict | None = None
        # read from a checkpoint, a file to predict or test with longer sequences than it trained on: said by a
        # model whose size depends on the length (learned positions, flatten pooling) when the weights do not fit
        self.longer_than_trained: str | None = None
        # where each row of the split ``predict`` reads (predict_path's, else the test split) comes from: the file
        # (or encoded folder) and the row's line (or record) there, in the split's order
        self._origin: dict[str, tuple[str, np.ndarray | None]] = {}

    # Sizes the data knows; the CLI links them into the model.
    @property
    def in_channels(self) -> int:
        return 4

    @property
    def vocab_size(self) -> int:
        return 0  # one-hot feature vectors, not token ids

    @property
    def task(self) -> Task:
        return self.hparams.task

    @property
    def num_outputs(self) -> int:
        return 1 if self.task == "regression" else int(self._statistics()["classes"])

    @property
    def target_mean(self) -> float:
        return self._statistics()["mean"] if self.task == "regression" else 0.0

    @property
    def target_std(self) -> float:
        if self.task != "regression":
            return 1.0
        stats = self._statistics()
        if not stats["std"] > 0:  # said of the file, not as the task's parameter (trial 30)
            source = self.hparams.train_path or "the simulated data"
            raise DataError(
                f"{source}: every training label is {stats['mean']:g}: a regression has nothing to learn from "
                "labels that do not vary (the label column or field is the right one?)"
            )
        return stats["std"]

    @property
    def seq_len(self) -> int:
        """The longest sequence in any split."""
        return self._statistics()["seq_len"]

    def _statistics(self) -> dict:
        """Label mean/std, class count and longest sequence, read a chunk at a time, once."""
        if self._stats is None and self._state is not None:  # as trained; positions for the longest read
            self._stats = dict(self._state["statistics"])
            read = self._load()
            name = max(read, key=lambda s: read[s].max_length())
            longest = int(read[name].max_length())
            if longest > self._stats["seq_len"]:
                self.longer_than_trained = (
                    f"{self.hparams[f'{name}_path']}: sequences up to {longest} bp, longer than the model's training "
                    f"data ({self._stats['seq_len']} bp)"
                )
                rank_zero_warn(
                    f"{self.longer_than_trained}: a Transformer reads them at positions it never trained at, and one "
                    "with learned positions (or flatten pooling) does not fit them"
                )
                self._stats["seq_len"] = longest
        if self._stats is None:
            splits = self._load()
            # One pass over each split's labels (predict labels may be NaN, so not that one).
            stats = {name: s.label_stats() for name, s in splits.items() if name != "predict"}
            mean, std, _, _ = stats["train"]
            top = max(s[3] for s in stats.values())
            seq_len = max(s.max_length() for s in splits.values())
            self._stats = {"mean": mean, "std": std, "classes": int(top) + 1, "seq_len": int(seq_len)}
            if self.task == "classification":
                self._warn_missing_classes(splits, int(top) + 1)
        return self._stats

    def _warn_missing_classes(self, splits: dict[str, RaggedStore], classes: int) -> None:
        """The head has one output per class id up to the largest in any split: ids that no training sequence
        has (a gap such as labels 0 and 7, or a class only the test file has) are said, not trained silently."""
        counts = np.bincount(np.asarray(splits["train"].labels, dtype=np.int64), minlength=classes)
        missing = np.flatnonzero(counts == 0)
        if len(missing):
            shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
            rank_zero_warn(
                f"{self.hparams.train_path or 'the training split'}: class ids {shown} never occur in training, yet the head has {classes} "
                "outputs (one per id up to the largest label in any split): are the labels 0..K-1?",
                stacklevel=5,
            )

    def setup(self, stage: str | None = None) -> None:
        self._load()

    def _load(self) -> dict[str, RaggedStore]:
        if self.splits is not None:
            return self.splits
        hp = self.hparams
        read = {"sequence_column": hp.sequence_column, "label_column": hp.label_column,
                "on_bad_line": hp.on_bad_line, "class_ids": self.task == "classification"}  # fmt: skip
        if self._state is not None:  # from a checkpoint: its statistics, no training data
            # predict_path alone where there is one (predict reads no other split)
            splits = {"test": self._read(hp.test_path, read, "test")} if hp.predict_path is None else {}
            classes = self._state["statistics"]["classes"]
            top = splits["test"].label_stats()[3] if self.task == "classification" and splits else -1
            if top >= classes:
                from datamodules.dna_formats import format_of

                test = splits["test"]
                first = next(
                    int(c[k]) for c in test.chunks() for k in np.flatnonzero(test.labels_of(c) >= classes)
                )
                _, lines = self._origin["test"]
                parquet = format_of(Path(hp.test_path)) == "parquet"  # rows there; lines in text and tables
                at = "" if lines is None else f", row {lines[first]}" if parquet else f":{lines[first]}"
                raise DataError(
                    f"{hp.test_path}{at}: class id {int(test.labels_of(first))} is outside the checkpoint's {classes} "
                    f"classes (0..{classes - 1}): a model answers in the classes it was trained on"
                )
        elif hp.train_path is None:
            sim = self.simulation
            simulated = simulate_splits(
                sim.n_train, sim.n_val, sim.n_test, sim.seq_len, sim.noise_std, sim.seed
            )
            splits = {name: split.data for name, split in simulated.items()}
            self.noise_ceiling = noise_ceiling(simulated["test"])
        else:
            # the training file's lines only where predict may read a split held out of it
            train = self._read(
                hp.train_path, read, "train" if hp.test_path is None and hp.test_fraction else None
            )
            held = {s: self._read(hp[f"{s}_path"], read, s if s == "test" else None)
                    for s in ("val", "test") if hp[f"{s}_path"] is not None}  # fmt: skip
            sizes = held_out_sizes(
                len(train), {s: hp[f"{s}_fraction"] for s in ("val", "test") if s not in held}
            )
            parts = hold_out(len(train), sizes, hp.split_seed)  # index views: an encoded folder stays on disk
            if len(parts["train"]) == 0:
                raise DataError(f"{hp.train_path}: no training examples left after the held-out splits")
            splits = {**{s: train.view(parts[s]) for s in sizes}, **held, "train": train.view(parts["train"])}
            path, lines = self._origin.pop("train", (str(hp.train_path), None))
            if "test" in sizes:  # held out of the training file: its rows' lines there
                rows = splits["test"].rows(np.arange(len(splits["test"])))
                self._origin["test"] = (path, None if lines is None else lines[rows])
        if hp.predict_path is not None:
            read = {**read, "labels_required": False, "class_ids": False}
            splits["predict"] = self._read(hp.predict_path, read, "predict")
        if (
            self.task == "classification"
        ):  # a file's labels were checked as read (naming lines), a folder's here
            _check_class_ids([s for n, s in splits.items() if n != "predict" and Path(s.source).is_dir()])
        sources = {s: f"{hp.train_path} [{s} part]" for s in ("val", "test") if hp[f"{s}_path"] is None}
        warn_shared(splits, "sequences", sources if hp.train_path is not None else None, _shown)
        self.splits = splits
        return splits

    def state_dict(self) -> dict:
        """Saved in every checkpoint: the label statistics, class count and sequence length the model was built
        with, which ``data.checkpoint`` predicts and tests with instead of the training files."""
        return {"statistics": self._statistics()}

    def _read(self, path: str, read: dict, origin: str | None) -> RaggedStore:
        """``read_dna`` of one split's file; with ``origin`` (a split ``predict`` may read, or the file one is held
        out of), noting where its rows come from (``_origin[origin]``): their lines in a file, None for an encoded
        folder (whose rows are its records)."""
        lines: list[np.ndarray] | None = [] if origin else None
        if not Path(path).exists():  # named by its option, as the other data modules name theirs
            option = next(f"data.{s}_path" for s in ("train", "val", "test", "predict")
                          if self.hparams[f"{s}_path"] == path)  # fmt: skip
            raise DataError(not_found(option, path))
        data = read_dna(path, **read, lines=lines)
        if origin:
            self._origin[origin] = (str(path), np.concatenate(lines) if lines else None)
        return data

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        data = self._load()[split]
        collate = RaggedCollate(pad_value=N_CODE, dtype=np.uint8)
        return make_loader(RaggedDataset(data), self.hparams, self.trainer, train, data.lengths_of, collate)

    def _has_predict_split(self) -> bool:
        return "predict" in self._load()

    def prediction_keys(self) -> list[tuple[str, np.ndarray]]:
        """What ties each ``predict`` row to its record in the file it was read from (``predict_path``, else the
        test split's: ``test_path``, or the training file it was held out of; bad records ``on_bad_line: skip``
        dropped are not rows, so the row index alone would not): its line in a text file, its data row in a
        table (1-based; the header, blank lines and lines of empty fields not counted) with the table's other
        columns (an id, the label) read again here, or its record (1-based) in an encoded folder; and for the
        test split, the label each row is scored against where those columns do not hold it. As (column name,
        values) pairs (the writer names them apart from its own); the simulated data's rows are only labelled."""
        from datamodules.dna_formats import format_of

        splits = self._load()
        split = "predict" if "predict" in splits else "test"
        data = splits[split]
        labels = []
        if split == "test":
            values = data.labels_of(np.arange(len(data)))
            if self.task == "classification":  # class ids, written as the predicted column writes them
                values = values.astype(np.int64)
            labels = [("label", values)]
        if split not in self._origin:  # the simulated benchmark
            return labels
        path, lines = self._origin[split]
        if lines is None:  # an encoded folder
            return [("record", data.rows(np.arange(len(data))) + 1), *labels]
        fmt = format_of(Path(path))
        if fmt == "text":
            return [("line", lines), *labels]
        return _table_keys(Path(path), fmt, lines, self.hparams.sequence_column)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        codes, lengths = batch["x"], batch["lengths"]
        training = self.trainer is not None and self.trainer.training
        if training and self.hparams.reverse_complement:
            flip = torch.rand(len(codes), device=codes.device) < 0.5
            codes = torch.where(flip[:, None], reverse_complement(codes, lengths), codes)
        batch["x"] = one_hot(codes)
        if not training and self.hparams.test_time_reverse_complement:
            batch["x_rc"] = one_hot(reverse_complement(codes, lengths))
        y = batch["y"]
        batch["y"] = y.long() if self.task == "classification" else y.float()
        return batch


def _shown(codes: np.ndarray) -> str:
    """A sequence's first bases, for a message."""
    text = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)[codes[:30]].tobytes().decode()
    return text + (f"... ({len(codes)} bp)" if len(codes) > 30 else "")


def _check_class_ids(splits: list[RaggedStore]) -> None:
    """An encoded folder's labels (a file's are checked as read), all its rows in order whichever split holds
    them: the first bad one is named by its row in the folder, which keeps no line numbers."""
    sources = {s.source: RaggedStore(s.values, s.offsets, s.labels, s.source) for s in splits}  # every row
    for whole in sources.values():
        for chunk in whole.chunks():
            labels = whole.labels_of(chunk).astype(np.float64)
            bad = np.union1d(not_class_ids(labels), np.flatnonzero(~np.isfinite(labels)))
            if len(bad):  # float32 as stored: 7 digits
                raise DataError(
                    f"{whole.source}: record {chunk[bad[0]] + 1}: label {labels[bad[0]]:.7g} {NOT_A_CLASS_ID}"
                )


def _table_keys(path: Path, fmt: str, lines: np.ndarray, sequence: str) -> list[tuple[str, np.ndarray]]:
    """The data row (1-based) of each of a table's records at ``lines`` (as ``read_dna`` numbers them), and its
    other columns, in the order of ``lines``: read again a chunk at a time, never the whole file's sequences."""
    from datamodules.dna_formats import open_data, read_table_chunks

    if fmt == "parquet":
        import pyarrow.parquet as pq

        names = [n for n in pq.ParquetFile(path).schema_arrow.names if n != sequence]
        table = pq.read_table(path, columns=names).take(lines - 1)  # rows are numbered 1.. already
        return [("row", lines), *((n, table.column(n).to_numpy(zero_copy_only=False)) for n in names)]
    import pandas as pd

    order = np.argsort(lines, kind="stable")  # the file's order, in which the chunks come
    wanted = lines[order]
    rows, parts, seen = [], [], 0  # rows as pandas counts them (blank lines not), and the other columns
    with open_data(path) as f:
        for frame in read_table_chunks(f, fmt, 100_000):
            hit = np.isin(frame.index.to_numpy() + 2, wanted)
            rows.append(seen + 1 + np.flatnonzero(hit))
            parts.append(frame.loc[hit, [c for c in frame.columns if c != sequence]])
            seen += len(frame)
    frame = pd.concat(parts)
    if len(frame) != len(lines):  # the file changed since it was read
        raise DataError(
            f"{path}: {len(lines) - len(frame)} of the rows read earlier are not there now; was it changed?"
        )
    back = np.empty_like(order)
    back[order] = np.arange(len(order))  # from the file's order to the split's
    return [
        ("row", np.concatenate(rows)[back]),
        *((str(c), frame[c].to_numpy()[back]) for c in frame.columns),
    ]
