"""Tokenized text for sequence classifiers: ``TextClassificationDataModule``, on ``datasets`` and ``tokenizers``.

Sources (``text_sources``): a Hugging Face Hub dataset (name and config), or local CSV/TSV/JSON/JSONL/Parquet
files. The tokenizer (``text_tokenize``) is any ``transformers`` AutoTokenizer (a hub name or a local folder)
or a WordPiece/BPE tokenizer trained on the training split.

Tokenized splits are cached on disk under a key made of the data, the columns, the labels, the split, the
tokenizer and ``max_length``: a second run with the same key memory-maps the token ids and never calls the
tokenizer. ``prepare_data`` builds the cache (once per node under DDP, behind a file lock), ``setup`` loads
it. A batch is a dict: ``x`` (B, L) token ids padded to the longest in the batch, ``lengths`` (B,) (the
attention mask is ``positions < lengths``) and ``y`` (B,) class ids.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from archbench.errors import DataError
from datamodules.files import build_folder_once, change_stamp, write_atomic
from datamodules.sampling import ClassificationData, SplitLoaders, check_loader_options, make_loader
from datamodules.splits import seeded_subset
from datamodules.storage import RaggedCollate, RaggedDataset, RaggedStore, open_store, warn_shared
from datamodules.text_sources import (
    Split,
    check_columns,
    label_key,
    label_names,
    load_file,
    load_splits,
)
from datamodules.text_tokenize import (
    SPECIAL,
    TOKENIZED_FILES,
    cached_tokenizer,
    check_bpe_size,
    digest,
    pretrained_tokenizer,
    tokenize_splits,
)

SPLITS = ("train", "val", "test")
TRAINED = ("wordpiece", "bpe")
CACHE_VERSION = (
    3  # bump when the cached layout or the split changes (3: the seeded split of datamodules.splits)
)


def default_cache_dir() -> Path:
    return Path(os.environ.get("ARCHBENCH_CACHE", Path.home() / ".cache" / "archbench")) / "text"


class TextClassificationDataModule(SplitLoaders, ClassificationData, L.LightningDataModule):
    SAVED = ("labels", "tokenizer")

    def __init__(
        self,
        dataset: str | None = None,
        dataset_config: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        predict_path: str | None = None,
        checkpoint: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        labels: list[str | int] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        tokenizer: str = "bpe",
        tokenizer_vocab_size: int = 8000,
        max_length: int = 128,
        batch_size: int = 32,
        global_batch_size: int | None = None,
        num_workers: int = 0,
        bucket_by_length: bool = False,
        cache_dir: str | None = None,
    ):
        """
        Args:
            dataset: A Hugging Face Hub dataset name (e.g. ``yelp_review_full``); needs a connection. Its
                ``train``/``validation``/``test`` splits are used where they exist. Empty: local files.
            dataset_config: The hub dataset's configuration name, if it has several.
            train_path: Training file: ``.csv``, ``.tsv``, ``.json``/``.jsonl`` or ``.parquet``.
            val_path: Validation file. Empty: ``val_fraction`` of the training data, split by ``split_seed``.
            test_path: Test file. Empty: ``test_fraction`` of the training data, split by ``split_seed``.
            predict_path: File of texts (labels optional) for ``predict``. Empty: the test set.
            checkpoint: A trained model's checkpoint, for ``predict`` with a ``predict_path``, and ``test`` (or
                ``predict``) with a ``test_path`` and no ``predict_path``: the class names, the tokenizer and
                ``max_length`` come from it, and the training files are not read (they need not exist). ``predict`` and ``test`` with
                ``--ckpt_path FILE`` set it.
            text_column: Column holding the texts.
            label_column: Column holding the labels (strings or integers).
            labels: The label set, in class-id order. Empty: the sorted distinct training labels. A label
                outside the set in any split is an error.
            val_fraction: Share of the training data held out for validation when there is no validation split.
            test_fraction: Share of the training data held out for testing when there is no test split.
            split_seed: Seed of the held-out splits and of the subsets (the training order follows the run's
                seed).
            train_size: Use a seeded random subset of this many training examples (the course: 10,000).
            val_size: Likewise for validation.
            test_size: Likewise for test (the course: 5,000).
            tokenizer: ``bpe`` or ``wordpiece``: train one on the training split (cached, and saved with the
                run); a run's ``tokenizer.json`` (its run folder's: what a checkpoint was trained with); otherwise
                a ``transformers`` AutoTokenizer hub name (``bert-base-cased``) or local folder. BPE training is
                deterministic; WordPiece training in tokenizers 0.23 is not (ties fall in hash order), so two
                fresh caches may hold different WordPiece vocabularies: evaluate such a run's checkpoint
                elsewhere with its ``tokenizer.json``.
            tokenizer_vocab_size: Vocabulary size of a trained tokenizer.
            max_length: Longest sequence in tokens, special tokens included; longer texts are truncated.
            batch_size: Examples per batch (per device).
            global_batch_size: Examples per optimizer step over all processes and accumulated batches
                (split into ``batch_size`` per device; it must divide): the optimisation stays the same when
                the device count changes.
            num_workers: DataLoader worker processes.
            bucket_by_length: Batch training texts of similar length together (less padding; the configs turn
                it on, see bench/padding.py).
            cache_dir: Where tokenized splits and trained tokenizers are cached. Empty:
                ``$ARCHBENCH_CACHE/text`` (default ``~/.cache/archbench/text``).
        """
        super().__init__()
        if (dataset is None) == (train_path is None):
            raise DataError(
                f"data: give either dataset (a hub name) or train_path (a local file), got dataset={dataset!r}, "
                f"train_path={train_path!r} (e.g. --config experiments/text/rotten_tomatoes.yaml)"
            )
        if not isinstance(max_length, int) or max_length < 2:
            raise DataError(
                f"data.max_length: {max_length!r} is not a length of at least 2 tokens (the specials)"
            )
        if text_column == label_column:
            raise DataError(
                f"data.label_column: {label_column!r} is also data.text_column: the labels need a column of their own"
            )
        for name in ("train_size", "val_size", "test_size", "tokenizer_vocab_size"):
            value = locals()[name]
            if value is not None and value < 1:
                raise DataError(f"data.{name}: {value} is not a positive integer")
        if tokenizer == "bpe":
            check_bpe_size(
                tokenizer_vocab_size,
                len(SPECIAL),
                "data.tokenizer wordpiece (its alphabet: the corpus's characters)",
            )
        self.save_hyperparameters()
        check_loader_options(self.hparams)
        self._state = self._checkpoint_state(checkpoint, predict_path, test_path)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self._tokenizer: Tokenizer | None = None
        self._pad_id: int | None = None
        self._labels: list[str] | None = None
        self._raw: dict[str, Split] | None = None
        self._class_names: list[str] | None = None
        self.splits: dict[str, RaggedStore] = {}
        self.tokenizer_calls = 0  # texts passed to the tokenizer by this object (the cache test reads it)

    # Sizes the data knows; the CLI links them into the model.
    @property
    def in_channels(self) -> int:
        return 0  # token ids, not feature vectors: the model embeds them (see ``vocab_size``)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def seq_len(self) -> int:
        if self._state is not None:  # the length the model was trained at
            return self.tokenizer.truncation["max_length"]
        return self.hparams.max_length

    @property
    def num_outputs(self) -> int:
        return len(self.labels)

    @property
    def pad_id(self) -> int:
        self.tokenizer  # noqa: B018 (loads it, which sets the padding id)
        return self._pad_id

    # --- sources ----------------------------------------------------------------------------------------

    def _raw_splits(self) -> dict[str, Split]:
        """The labelled splits (not tokenized), held-out parts and subsets taken, columns checked."""
        if self._raw is None:
            hp = self.hparams
            self._raw, self._class_names = load_splits(
                hp.dataset, hp.dataset_config, {s: hp[f"{s}_path"] for s in SPLITS}, hp.text_column,
                hp.label_column, {s: hp.get(f"{s}_fraction") for s in SPLITS},
                {s: hp[f"{s}_size"] for s in SPLITS}, hp.split_seed, str(self.cache_dir / "hf"),
            )  # fmt: skip
        return self._raw

    @property
    def labels(self) -> list[str]:
        """Class names in id order."""
        if self._labels is None and self._state is not None:
            self._labels = list(self._state["labels"])
        if self._labels is None:
            hp = self.hparams
            train = self._raw_splits()["train"]
            self._labels = label_names(train, hp.label_column, hp.labels, self._class_names)
        return self._labels

    # --- tokenizer --------------------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Tokenizer:
        """The fast (Rust) tokenizer, with truncation at ``max_length`` and special tokens added."""
        if self._tokenizer is None:
            hp = self.hparams
            if self._state is not None:  # as trained, truncation length included
                tokenizer = Tokenizer.from_str(self._state["tokenizer"])
                length = (tokenizer.truncation or {}).get("max_length", hp.max_length)
            else:
                tokenizer = (
                    self._trained_tokenizer()
                    if hp.tokenizer in TRAINED
                    else pretrained_tokenizer(hp.tokenizer)
                )  # a run's tokenizer.json included
                length = hp.max_length
            self._pad_id = (tokenizer.padding or {}).get("pad_id")
            if self._pad_id is None:
                raise DataError(f"data.tokenizer: {hp.tokenizer!r} has no padding token")
            tokenizer.enable_truncation(length)
            tokenizer.no_padding()  # batches are padded by the collate function, to their own longest
            self._tokenizer = tokenizer
        return self._tokenizer

    def _trained_tokenizer(self) -> Tokenizer:
        hp = self.hparams
        key = digest(CACHE_VERSION, hp.tokenizer, hp.tokenizer_vocab_size, self._data_identity(predict=False))
        path = self.cache_dir / "tokenizers" / f"{hp.tokenizer}-{key}.json"
        train = self._raw_splits()["train"]
        return cached_tokenizer(
            path, hp.tokenizer, hp.tokenizer_vocab_size, train, hp.text_column, self._count_calls
        )

    # --- cache ------------------------------------------------------------------------------------------

    def _data_identity(self, predict: bool = True) -> list:
        """What the texts of the splits depend on: the files (path and ``change_stamp``, so a file edited and given
        its old time back, as ``cp -p`` and ``rsync -a`` do, is read again) or hub name, the columns and the split
        (``predict``: and the predict file; a trained tokenizer does not depend on it)."""
        hp = self.hparams
        files = []
        for split in (*SPLITS, "predict") if predict else SPLITS:
            path = hp[f"{split}_path"]
            if path:
                found = Path(path).exists()
                files.append([split, str(Path(path).resolve()), change_stamp(Path(path)) if found else None])
        fields = [
            "dataset", "dataset_config", "text_column", "label_column", "val_fraction", "test_fraction",
            "split_seed", "train_size", "val_size", "test_size",
        ]  # fmt: skip
        return [files, {f: hp[f] for f in fields}]

    def _identity(self) -> list:
        """What the tokenized cache depends on."""
        hp = self.hparams
        tokenizer = digest(self.tokenizer.to_str())
        return [CACHE_VERSION, self._data_identity(), hp.labels, hp.tokenizer, hp.tokenizer_vocab_size,
                hp.max_length, tokenizer, self._state is not None]  # fmt: skip  # from a checkpoint: its own folder

    @property
    def cache_path(self) -> Path:
        return self.cache_dir / "tokenized" / digest(self._identity())

    def prepare_data(self) -> None:
        """Tokenize every split into the cache unless it is there (Lightning runs this once per node)."""
        build_folder_once(self.cache_path, self._tokenize_into)

    def _tokenize_into(self, folder: Path) -> None:
        hp = self.hparams
        splits = {} if self._state is not None else dict(self._raw_splits())
        if self._state is not None and not hp.predict_path:  # predict_path alone where there is one
            test = Split(load_file(hp.test_path, "test_path", str(self.cache_dir / "hf")), hp.test_path)
            # the subset reading every split takes
            subset = seeded_subset(
                len(test.data), hp.test_size, hp.split_seed, 2, "data.test_size", hp.test_path
            )
            splits["test"] = test.select(subset.materialize(sort=True)) if subset is not None else test
            check_columns(splits["test"], {"text_column": hp.text_column, "label_column": hp.label_column})
        if hp.predict_path:
            predict = load_file(hp.predict_path, "predict_path", str(self.cache_dir / "hf"))
            splits["predict"] = Split(predict, hp.predict_path)
            check_columns(splits["predict"], {"text_column": hp.text_column})
        counts, truncated = tokenize_splits(
            splits, self.tokenizer, self.labels, hp.text_column, hp.label_column, folder, self._count_calls
        )
        meta = {"labels": self.labels, "counts": counts, "truncated": truncated, "identity": self._identity()}
        if "test" in splits:  # for predict on the test split: each row's row in what it was read from
            test = splits["test"]
            np.save(folder / "test_rows.npy", np.arange(len(test.data)) if test.rows is None else test.rows)
            meta["test_rows_of"] = "train" if test.source.endswith("[test part]") else "test"
        (folder / "tokenizer.json").write_text(self.tokenizer_json())
        (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        # the raw tables (a held-out split's row list among them) are done with: their memory goes back for the
        # rest of set-up (data larger than the memory limit needs it)
        self._raw = None

    def _count_calls(self, n: int) -> None:
        self.tokenizer_calls += n

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            path = self.cache_path
            if not (path / "meta.json").exists():  # setup without prepare_data (a user calling it directly)
                self.prepare_data()
            for split in (*SPLITS, "predict"):
                if (path / split).exists():
                    self.splits[split] = open_store(path / split, TOKENIZED_FILES, "token")
            self._say_truncated(json.loads((path / "meta.json").read_text()))
            warn_shared(self.splits, "texts", self._split_sources(), self._shown)
        if self.trainer is not None and self.trainer.loggers:  # without a logger there is no run folder
            log_dir = self.trainer.log_dir  # a broadcast under DDP: every rank must ask
            if self.trainer.is_global_zero and log_dir:
                self.save_run_files(Path(log_dir))

    def _say_truncated(self, meta: dict) -> None:
        """Texts longer than ``max_length`` tokens, which the model reads only the start of: said per split."""
        length = self.seq_len
        for split, cut in (meta.get("truncated") or {}).items():
            if cut:
                rows = meta["counts"][split]
                rank_zero_warn(
                    f"data.max_length {length}: {cut} of {rows} {split} texts ({100 * cut / rows:.1f}%) are longer "
                    f"and are cut to their first {length} tokens; the model never reads the rest (raise "
                    "data.max_length to read more)"
                )

    def _split_sources(self) -> dict[str, str]:
        """Each held-out split's file, or the part of the training file (or the hub dataset's split) it is."""
        hp = self.hparams
        if hp.dataset is not None:
            return {s: f"{hp.dataset} [{s}]" for s in ("val", "test")}
        given = {"val": hp.val_path, "test": hp.test_path}
        return {s: given[s] or f"{hp.train_path} [{s} part]" for s in ("val", "test")}

    def _shown(self, ids: np.ndarray) -> str:
        """A tokenized text as the tokenizer reads it back, for a message (the cache's copy of the tokenizer:
        building it again could mean reading the raw data)."""
        tokenizer = self._tokenizer or Tokenizer.from_file(str(self.cache_path / "tokenizer.json"))
        text = tokenizer.decode([int(i) for i in ids]).strip()
        return repr(text if len(text) <= 60 else text[:57] + "...")

    def save_run_files(self, folder: Path) -> None:
        """The label mapping and the tokenizer, beside the run's logs (they are in checkpoints too)."""
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "labels.json", json.dumps(self.labels, indent=1).encode())
        write_atomic(folder / "tokenizer.json", self.tokenizer_json())

    def tokenizer_json(self) -> str:
        """The tokenizer as ``tokenizers`` saves it, padding token included: ``Tokenizer.from_file`` loads it."""
        saved = Tokenizer.from_str(self.tokenizer.to_str())
        saved.enable_padding(pad_id=self.pad_id, pad_token=self.tokenizer.id_to_token(self.pad_id))
        return saved.to_str()

    def state_dict(self) -> dict:
        """Saved in every checkpoint: checked against the data's labels and tokenizer when a checkpoint is
        restored, and what ``data.checkpoint`` predicts with instead of the training files."""
        return {"labels": self.labels, "tokenizer": self.tokenizer_json()}

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint's labels and tokenizer must be this data's: ids would mean other tokens otherwise."""
        if "labels" in state and list(map(label_key, state["labels"])) != list(map(label_key, self.labels)):
            raise DataError(
                f"checkpoint labels {state['labels']} differ from this data's labels {self.labels}"
            )
        if "tokenizer" in state and state["tokenizer"] != self.tokenizer_json():
            raise DataError(
                f"the checkpoint's tokenizer differs from this data's (data.tokenizer: {self.hparams.tokenizer!r}, "
                f"max_length {self.hparams.max_length}): use the config the checkpoint was trained with, and "
                "for a trained tokenizer its run folder's tokenizer.json (--data.tokenizer RUN/tokenizer.json)"
            )

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """A batch, as the dataloaders make it, from raw texts (for attention maps and quick predictions)."""
        encodings = self.tokenizer.encode_batch(texts)
        return RaggedCollate(self.pad_id)([(np.array(e.ids), -1) for e in encodings])

    # --- loaders ----------------------------------------------------------------------------------------

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        if not self.splits:
            self.setup()
        data = self.splits[split]
        collate = RaggedCollate(self.pad_id, np.int64)
        return make_loader(RaggedDataset(data), self.hparams, self.trainer, train, data.lengths_of, collate)

    def _has_predict_split(self) -> bool:
        return "predict" in self.splits

    def prediction_keys(self) -> list[tuple[str, np.ndarray]]:
        """What ties each ``predict`` row to its record in ``predict_path``: its row (1-based, the header and
        blank lines not counted, as pandas and ``datasets`` count them) and the file's other columns (an id, a
        label), read again. For the test split (no ``predict_path``) likewise, in the file it was read from
        (``test_path``, or the training file it was held out of; a hub dataset's test split), and the label each
        row is scored against."""
        hp = self.hparams
        option, rows, label = "predict_path", None, []  # a file to predict: every row, its columns as written
        if not hp.predict_path:
            test = self.splits["test"]
            ids = np.asarray(test.labels_of(np.arange(len(test)))).tolist()
            label = [("label", [self.labels[i] if i >= 0 else "" for i in ids])]
            rows_of = json.loads((self.cache_path / "meta.json").read_text()).get("test_rows_of")
            if rows_of is None:  # a cache written by an older version
                rank_zero_warn(f"{self.cache_path}: tokenized by an older version, which kept no rows of the test "
                               "split: predictions.tsv has their labels alone; delete that folder for the rows")  # fmt: skip
                return label
            rows = np.load(self.cache_path / "test_rows.npy")
            # a hub dataset's rows: of its test split, or of its train split the test was held out of (from a
            # checkpoint, the test split is read from test_path)
            if hp.dataset is not None and self._state is None:
                return [(f"{rows_of}_row", rows + 1), *label]
            option = "test_path" if rows_of == "test" else "train_path"
        data = load_file(hp[option], option, str(self.cache_dir / "hf"))
        if rows is not None:
            data = data.select(rows)
        taken = (hp.text_column,) if option == "predict_path" else (hp.text_column, hp.label_column)
        others = [c for c in data.column_names if c not in taken]
        table = data.select_columns(others).with_format("numpy")
        rows = np.arange(len(data)) if rows is None else rows
        return [("row", rows + 1), *((c, np.asarray(table[c])) for c in others), *label]
