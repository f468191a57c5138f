"""Tokenized text for sequence classifiers: ``TextClassificationDataModule``, on ``datasets`` and ``tokenizers``.

Sources: a Hugging Face Hub dataset (name and config), or local CSV/TSV/JSON/JSONL/Parquet files read with
``datasets.load_dataset(format, data_files=...)``. The tokenizer is any ``transformers`` AutoTokenizer (a
hub name or a local folder) or a WordPiece/BPE tokenizer trained on the training split.

Tokenized splits are cached on disk under a key made of the data, the columns, the labels, the split, the
tokenizer and ``max_length``: a second run with the same key loads Arrow files and never calls the
tokenizer. ``prepare_data`` builds the cache (once per node under DDP, behind a file lock), ``setup`` loads
it. A batch is a dict: ``x`` (B, L) token ids padded to the longest in the batch, ``lengths`` (B,) (the
attention mask is ``positions < lengths``) and ``y`` (B,) class ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import datasets
import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from filelock import FileLock
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset

from archbench.errors import DataError
from datamodules.files import NpyStream, write_atomic
from datamodules.sampling import ClassificationData, SplitLoaders, make_loader

SPLITS = ("train", "val", "test")
FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
TRAINED = ("wordpiece", "bpe")
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
CACHE_VERSION = 2  # bump when the cached layout changes (2: memory-mapped .npy instead of Arrow)


def default_cache_dir() -> Path:
    return Path(os.environ.get("ARCHBENCH_CACHE", Path.home() / ".cache" / "archbench")) / "text"


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class TokenizedSplit:
    """Token ids of one split as one flat array and offsets (Arrow's list layout), and the class ids."""

    ids: np.ndarray  # (total_tokens,) int32
    offsets: np.ndarray  # (n + 1,) int64
    labels: np.ndarray  # (n,) int64; -1 where unlabelled (predict)

    @classmethod
    def load(cls, path: Path) -> TokenizedSplit:
        """Memory-map a split written by :func:`write_tokenized`: nothing is read until batches need it."""
        return cls(*(np.load(path / f"{name}.npy", mmap_mode="r") for name in ("ids", "offsets", "labels")))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.labels)


def write_tokenized(data: datasets.Dataset, folder: Path, batch_size: int = 10_000) -> None:
    """A tokenized split (``input_ids``, ``label``) as ``ids.npy`` / ``offsets.npy`` / ``labels.npy``, written a
    batch at a time (memory does not grow with the data)."""
    ids, offsets = NpyStream(folder / "ids.npy", np.int32), NpyStream(folder / "offsets.npy", np.int64)
    labels = NpyStream(folder / "labels.npy", np.int64)
    total = 0
    offsets.append(np.zeros(1, dtype=np.int64))
    for batch in data.with_format("arrow").iter(batch_size=batch_size):
        for chunk in batch.column("input_ids").chunks:
            lengths = pc.list_value_length(chunk).to_numpy(zero_copy_only=False).astype(np.int64)
            ids.append(chunk.flatten().to_numpy(zero_copy_only=False))
            offsets.append(total + np.cumsum(lengths))
            total += int(lengths.sum())
        labels.append(batch.column("label").to_numpy())
    for stream in (ids, offsets, labels):
        stream.close()


class TokenDataset(Dataset):
    def __init__(self, split: TokenizedSplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        s = self.split
        return s.ids[s.offsets[i] : s.offsets[i + 1]], int(s.labels[i])


class PadCollate:
    """Pads token ids to the longest sequence of the batch with ``pad_id``."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[tuple[np.ndarray, int]]) -> dict[str, torch.Tensor]:
        lengths = np.fromiter((len(ids) for ids, _ in items), dtype=np.int64, count=len(items))
        x = np.full((len(items), int(lengths.max())), self.pad_id, dtype=np.int64)
        for row, (ids, _) in enumerate(items):
            x[row, : len(ids)] = ids
        return {
            "x": torch.from_numpy(x),
            "lengths": torch.from_numpy(lengths),
            "y": torch.tensor([y for _, y in items], dtype=torch.long),
        }


class TextClassificationDataModule(SplitLoaders, ClassificationData, L.LightningDataModule):
    def __init__(
        self,
        dataset: str | None = None,
        dataset_config: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        predict_path: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        labels: list[str] | None = None,
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
            text_column: Column holding the texts.
            label_column: Column holding the labels (strings or integers).
            labels: The label set, in class-id order. Empty: the sorted distinct training labels. A label
                outside the set in any split is an error.
            val_fraction: Share of the training data held out for validation when there is no validation split.
            test_fraction: Share of the training data held out for testing when there is no test split.
            split_seed: Seed of the held-out splits and of the subsets.
            train_size: Use a seeded random subset of this many training examples (the course: 10,000).
            val_size: Likewise for validation.
            test_size: Likewise for test (the course: 5,000).
            tokenizer: ``bpe`` or ``wordpiece``: train one on the training split (cached, and saved with the
                run); otherwise a ``transformers`` AutoTokenizer hub name (``bert-base-cased``) or local folder.
                BPE training is deterministic; WordPiece training in tokenizers 0.23 is not (ties fall in hash
                order), so two fresh caches may hold different WordPiece vocabularies.
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
                f"train_path={train_path!r}"
            )
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= value < 1.0:
                raise DataError(f"data.{name}: {value} is outside [0, 1)")
        if max_length < 2:
            raise DataError(f"data.max_length: {max_length} is too short (special tokens need 2)")
        self.save_hyperparameters()
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self._tokenizer: Tokenizer | None = None
        self._pad_id: int | None = None
        self._labels: list[str] | None = None
        self._raw: dict[str, datasets.Dataset] | None = None
        self._class_names: list[str] | None = None
        self.splits: dict[str, TokenizedSplit] = {}
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
        return self.hparams.max_length

    @property
    def num_outputs(self) -> int:
        return len(self.labels)

    @property
    def pad_id(self) -> int:
        self.tokenizer  # noqa: B018 (loads it, which sets the padding id)
        return self._pad_id

    # --- sources ----------------------------------------------------------------------------------------

    def _source(self, split: str) -> str:
        hp = self.hparams
        if hp.dataset is not None:
            return f"{hp.dataset}" + (f"/{hp.dataset_config}" if hp.dataset_config else "") + f" [{split}]"
        return hp[f"{split}_path"] or f"{hp.train_path} [{split} part]"

    def _raw_splits(self) -> dict[str, datasets.Dataset]:
        """The labelled splits as ``datasets.Dataset`` (not tokenized), subsets taken, columns checked."""
        if self._raw is not None:
            return self._raw
        hp = self.hparams
        cache = str(self.cache_dir / "hf")
        if hp.dataset is not None:
            loaded = _load_hub(hp.dataset, hp.dataset_config, cache)
            named = {"train": "train", "val": "validation", "test": "test"}
            raw = {ours: loaded[theirs] for ours, theirs in named.items() if theirs in loaded}
            if "train" not in raw:
                raise DataError(f"data.dataset: {hp.dataset!r} has no 'train' split (has {list(loaded)})")
        else:
            raw = {s: _load_file(hp[f"{s}_path"], s, cache) for s in SPLITS if hp[f"{s}_path"]}
        for split, data in raw.items():
            _check_columns(data, self._source(split), [hp.text_column, hp.label_column])
            feature = data.features[hp.label_column]
            if isinstance(feature, datasets.ClassLabel):  # hub labels: ids with names; keep the names
                self._class_names = list(feature.names)
                raw[split] = data.cast_column(hp.label_column, datasets.Value("int64")).map(
                    lambda b, f=feature: {hp.label_column: f.int2str(b[hp.label_column])},
                    batched=True,
                    features=datasets.Features(
                        {
                            **{k: v for k, v in data.features.items() if k != hp.label_column},
                            hp.label_column: datasets.Value("string"),
                        }
                    ),
                )
        order = np.random.default_rng(hp.split_seed).permutation(len(raw["train"]))
        for split, fraction in (("val", hp.val_fraction), ("test", hp.test_fraction)):
            if split not in raw:
                k = int(round(fraction * len(raw["train"])))
                raw[split], order = raw["train"].select(np.sort(order[:k])), order[k:]
        if len(order) == 0:
            raise DataError(f"{self._source('train')}: no training examples left after the held-out splits")
        raw["train"] = raw["train"].select(np.sort(order))
        for split in SPLITS:
            size = hp[f"{split}_size"]
            if size is not None and size < len(raw[split]):
                pick = np.random.default_rng((hp.split_seed, SPLITS.index(split))).permutation(
                    len(raw[split])
                )
                raw[split] = raw[split].select(np.sort(pick[:size]))
        keep = [hp.text_column, hp.label_column]
        self._raw = {s: d.select_columns(keep) for s, d in raw.items()}
        return self._raw

    @property
    def labels(self) -> list[str]:
        """Class names in id order."""
        if self._labels is None:
            hp = self.hparams
            train = self._raw_splits()["train"]
            if hp.labels is not None:
                labels = [str(v) for v in hp.labels]
                if len(set(labels)) != len(labels):
                    raise DataError(f"data.labels: {hp.labels} has repeated labels")
            elif self._class_names is not None:
                labels = self._class_names
            else:
                values = [v for v in _unique_labels(train, hp.label_column) if v is not None]
                labels = [str(v) for v in sorted(values)]
            if len(labels) < 2:
                raise DataError(
                    f"{self._source('train')}: column {hp.label_column!r} has fewer than 2 labels: {labels}"
                )
            self._labels = labels
        return self._labels

    # --- tokenizer --------------------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Tokenizer:
        """The fast (Rust) tokenizer, with truncation at ``max_length`` and special tokens added."""
        if self._tokenizer is None:
            hp = self.hparams
            if hp.tokenizer in TRAINED:
                tokenizer = self._trained_tokenizer()
            else:
                tokenizer = _pretrained_tokenizer(hp.tokenizer)
            self._pad_id = (tokenizer.padding or {}).get("pad_id")
            if self._pad_id is None:
                raise DataError(f"data.tokenizer: {hp.tokenizer!r} has no padding token")
            tokenizer.enable_truncation(hp.max_length)
            tokenizer.no_padding()  # batches are padded by the collate function, to their own longest
            self._tokenizer = tokenizer
        return self._tokenizer

    def _trained_tokenizer(self) -> Tokenizer:
        hp = self.hparams
        train = self._raw_splits()["train"]
        key = _digest(
            CACHE_VERSION, hp.tokenizer, hp.tokenizer_vocab_size, train._fingerprint, hp.text_column
        )
        path = self.cache_dir / "tokenizers" / f"{hp.tokenizer}-{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                _check_texts(train, self._source("train"), hp.text_column)
                tokenizer = train_tokenizer(
                    hp.tokenizer, _batches(train, hp.text_column), hp.tokenizer_vocab_size, len(train)
                )
                self.tokenizer_calls += len(train)
                write_atomic(path, tokenizer.to_str().encode())
        return Tokenizer.from_file(str(path))

    # --- cache ------------------------------------------------------------------------------------------

    def _identity(self) -> list:
        """What the tokenized cache depends on."""
        hp = self.hparams
        files = []
        for split in (*SPLITS, "predict"):
            path = hp[f"{split}_path"]
            if path:
                stat = Path(path).stat() if Path(path).exists() else None
                files.append(
                    [split, str(Path(path).resolve()), stat and stat.st_size, stat and stat.st_mtime_ns]
                )
        fields = [
            "dataset", "dataset_config", "text_column", "label_column", "labels", "val_fraction",
            "test_fraction", "split_seed", "train_size", "val_size", "test_size", "tokenizer",
            "tokenizer_vocab_size", "max_length",
        ]  # fmt: skip
        tokenizer = hashlib.sha256(self.tokenizer.to_str().encode()).hexdigest()
        return [CACHE_VERSION, files, {f: hp[f] for f in fields}, tokenizer]

    @property
    def cache_path(self) -> Path:
        return self.cache_dir / "tokenized" / _digest(self._identity())

    def prepare_data(self) -> None:
        """Tokenize every split into the cache unless it is there (Lightning runs this once per node)."""
        path = self.cache_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if (path / "meta.json").exists():
                return
            tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", dir=path.parent))
            try:
                self._tokenize_into(tmp)
                if path.exists():  # a half-written folder left by a killed run
                    shutil.rmtree(path)
                os.replace(tmp, path)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    def _tokenize_into(self, folder: Path) -> None:
        hp = self.hparams
        raw = dict(self._raw_splits())
        if hp.predict_path:
            raw["predict"] = _load_file(hp.predict_path, "predict", str(self.cache_dir / "hf"))
            _check_columns(raw["predict"], hp.predict_path, [hp.text_column])
        ids = {name: i for i, name in enumerate(self.labels)}
        tokenizer = self.tokenizer
        counts = {}
        for split, data in raw.items():
            source = self._source(split) if split != "predict" else hp.predict_path
            _check_texts(data, source, hp.text_column)
            labelled = split != "predict" or hp.label_column in data.column_names
            if labelled:
                _check_labels(data, source, hp.label_column, ids)

            def encode(batch: dict, labelled: bool = labelled) -> dict:
                self.tokenizer_calls += len(batch[hp.text_column])
                encodings = tokenizer.encode_batch(batch[hp.text_column])
                n = len(encodings)
                label = [ids[str(v)] for v in batch[hp.label_column]] if labelled else [-1] * n
                return {"input_ids": [e.ids for e in encodings], "label": label}

            scratch = folder / f"{split}.tokenizing.arrow"  # on disk, batch by batch: never the whole split
            tokenized = data.map(
                encode,
                batched=True,
                batch_size=2000,
                remove_columns=data.column_names,
                features=datasets.Features(
                    {
                        "input_ids": datasets.Sequence(datasets.Value("int32")),
                        "label": datasets.Value("int64"),
                    }
                ),
                new_fingerprint=_digest(self._identity(), split),
                load_from_cache_file=False,
                cache_file_name=str(scratch),
                desc=f"tokenizing {split} ({source})",
            )
            write_tokenized(tokenized, folder / split)
            counts[split] = len(tokenized)
            del tokenized
            scratch.unlink(missing_ok=True)
        meta = {"labels": self.labels, "counts": counts, "identity": self._identity()}
        (folder / "tokenizer.json").write_text(self.tokenizer_json())
        (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str))

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        path = self.cache_path
        if not (path / "meta.json").exists():  # setup without prepare_data (a user calling it directly)
            self.prepare_data()
        for split in (*SPLITS, "predict"):
            if (path / split).exists():
                self.splits[split] = TokenizedSplit.load(path / split)
        if self.trainer is not None and self.trainer.loggers:  # without a logger there is no run folder
            log_dir = self.trainer.log_dir  # a broadcast under DDP: every rank must ask
            if self.trainer.is_global_zero and log_dir:
                self.save_run_files(Path(log_dir))

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
        """Saved in every checkpoint: a checkpoint alone can tokenize new text and name its classes."""
        return {"labels": self.labels, "tokenizer": self.tokenizer_json()}

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint's labels and tokenizer must be this data's: ids would mean other tokens otherwise."""
        if "labels" in state and state["labels"] != self.labels:
            raise DataError(
                f"checkpoint labels {state['labels']} differ from this data's labels {self.labels}"
            )
        if "tokenizer" in state and state["tokenizer"] != self.tokenizer_json():
            raise DataError(
                f"the checkpoint's tokenizer differs from this data's (data.tokenizer: {self.hparams.tokenizer!r}, "
                f"max_length {self.hparams.max_length}): use the config the checkpoint was trained with"
            )

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """A batch, as the dataloaders make it, from raw texts (for attention maps and quick predictions)."""
        encodings = self.tokenizer.encode_batch(texts)
        return PadCollate(self.pad_id)([(np.array(e.ids), -1) for e in encodings])

    # --- loaders ----------------------------------------------------------------------------------------

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        if not self.splits:
            self.setup()
        data = self.splits[split]
        return make_loader(
            TokenDataset(data),
            self.hparams,
            self.trainer,
            train,
            data.lengths,
            collate_fn=PadCollate(self.pad_id),
        )

    def _has_predict_split(self) -> bool:
        return "predict" in self.splits


# --- helpers ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """No ``datasets`` progress bars for the small steps (reading, saving); restored afterwards."""
    was_disabled = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.utils.enable_progress_bars()


def _load_file(path: str, split: str, cache: str) -> datasets.Dataset:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"data.{split}_path: file {path!r} not found")
    fmt = FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise DataError(
            f"data.{split}_path: {path!r}: unknown format {file.suffix!r}; expected one of {sorted(FORMATS)}"
        )
    kwargs = {"delimiter": "\t"} if file.suffix.lower() == ".tsv" else {}
    try:
        with _quiet():
            return datasets.load_dataset(fmt, data_files=str(file), split="train", cache_dir=cache, **kwargs)
    except Exception as err:  # pyarrow/pandas parse errors: report the file, not a traceback
        raise DataError(f"{path}: could not be read as {fmt}: {str(err).splitlines()[0][:300]}") from None


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _load_hub(name: str, config: str | None, cache: str) -> datasets.DatasetDict:
    try:
        return datasets.load_dataset(name, config, cache_dir=cache)
    except (ConnectionError, datasets.exceptions.DatasetNotFoundError, FileNotFoundError, ValueError) as err:
        if isinstance(err, ConnectionError) or _offline():
            raise DataError(
                f"data.dataset: {name!r} cannot be fetched from the Hugging Face Hub: this machine is offline "
                "(or the Hub is unreachable). Give local files with data.train_path/val_path/test_path instead."
            ) from None
        raise DataError(f"data.dataset: {name!r} (config {config!r}) not found: {str(err)[:300]}") from None


def _pretrained_tokenizer(name: str) -> Tokenizer:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        where = "a local folder" if Path(name).exists() else "a hub name"
        hint = (
            " This machine is offline: give a local folder." if _offline() and not Path(name).exists() else ""
        )
        raise DataError(
            f"data.tokenizer: {name!r} ({where}) could not be loaded as a tokenizer: {str(err).splitlines()[0][:200]}.{hint}"
        ) from None
    if not tokenizer.is_fast:
        raise DataError(f"data.tokenizer: {name!r} has no fast (Rust) tokenizer")
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    if tokenizer.pad_token_id is not None:
        backend.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    return backend


def train_tokenizer(kind: str, texts, vocab_size: int, length: int | None = None) -> Tokenizer:
    """A WordPiece (BERT-style, lower-cased) or byte-level BPE tokenizer trained on ``texts`` (batches)."""
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL)
    else:
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    tokenizer.train_from_iterator(texts, trainer, length=length)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    return tokenizer


def _batches(data: datasets.Dataset, column: str, size: int = 2000):
    for batch in _arrow_batches(data, column, size):
        yield batch.to_pylist()


def _row_label(source: str, row: int) -> str:
    """Row ``row`` (0-based) of ``source``, with the line of the file where the format has lines."""
    file = Path(source.split(" [")[0])  # "train.csv [test part]": a held-out part of that file
    suffix = file.suffix.lower() if file.exists() else ""
    if suffix in (".csv", ".tsv"):
        return f"{source}: row {row + 1} (line {row + 2})"
    if suffix == ".jsonl":
        return f"{source}: row {row + 1} (line {row + 1})"
    if suffix == ".json":
        return f"{source}: record {row + 1}"
    return f"{source}: row {row + 1}"


def _check_columns(data: datasets.Dataset, source: str, columns: list[str]) -> None:
    for column in columns:
        if column not in data.column_names:
            raise DataError(f"{source}: no column {column!r} (columns: {', '.join(data.column_names)})")


def _arrow_batches(data: datasets.Dataset, column: str, size: int = 10_000):
    """The rows of ``data`` (a subset's own rows, in order) as Arrow arrays of ``size`` values: checks read a
    batch at a time, never a whole column."""
    for batch in data.select_columns([column]).with_format("arrow").iter(batch_size=size):
        yield batch.column(column)


def _check_texts(data: datasets.Dataset, source: str, column: str) -> None:
    first, count, seen = None, 0, 0
    for texts in _arrow_batches(data, column):
        if not pa.types.is_string(texts.type) and not pa.types.is_large_string(texts.type):
            raise DataError(f"{source}: column {column!r} holds {texts.type}, not text")
        empty = pc.or_kleene(pc.is_null(texts), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0))
        bad = np.flatnonzero(empty.fill_null(True).to_numpy(zero_copy_only=False))
        if len(bad) and first is None:
            first = seen + int(bad[0])
        count, seen = count + len(bad), seen + len(texts)
    if count:
        row = _original_row(data, first)
        raise DataError(f"{_row_label(source, row)}: column {column!r} is empty ({count} empty texts in all)")


def _unique_labels(data: datasets.Dataset, column: str) -> list:
    values: set = set()
    for batch in _arrow_batches(data, column):
        values.update(pc.unique(batch).to_pylist())
    return list(values)


def _check_labels(data: datasets.Dataset, source: str, column: str, ids: dict[str, int]) -> None:
    seen = 0
    for values in _arrow_batches(data, column):
        unknown = [v for v in pc.unique(values).to_pylist() if v is None or str(v) not in ids]
        if unknown:
            first = (
                pc.is_null(values)
                if unknown[0] is None
                else pc.equal(values, pa.scalar(unknown[0], values.type))
            )
            index = int(np.flatnonzero(first.fill_null(False).to_numpy(zero_copy_only=False))[0])
            row = _original_row(data, seen + index)
            raise DataError(
                f"{_row_label(source, row)}: column {column!r} value {unknown[0]!r} is not one of the labels "
                f"{list(ids)}"
            )
        seen += len(values)


def _original_row(data: datasets.Dataset, i: int) -> int:
    """Row ``i`` of a (possibly selected) dataset as a row of its source file."""
    indices = data._indices
    return int(indices.column(0)[i].as_py()) if indices is not None else i
