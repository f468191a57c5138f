"""Tiny grapheme-to-phoneme-like pair files for the seq2seq tests: words of a few letters, each letter read as
one upper-case symbol with a stress digit on vowels; every tenth word with a second pronunciation."""

from pathlib import Path

import numpy as np

LETTERS = "abdeiklmnostu"


def pronounce(word: str) -> str:
    return " ".join(c.upper() + ("1" if c in "aeiou" else "") for c in word)


def write_pairs(folder: Path, n_train: int = 120, n_eval: int = 24, seed: int = 0) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    words = sorted(
        {
            "".join(rng.choice(list(LETTERS), size=rng.integers(2, 7)))
            for _ in range(3 * (n_train + 2 * n_eval))
        }
    )
    words = [words[i] for i in rng.permutation(len(words))]
    parts = {"train": words[:n_train], "val": words[n_train : n_train + n_eval],
             "test": words[n_train + n_eval : n_train + 2 * n_eval]}  # fmt: skip
    paths = {}
    for split, chosen in parts.items():
        lines = ["word\tphonemes"]
        for i, word in enumerate(chosen):
            lines.append(f"{word}\t{pronounce(word)}")
            if i % 10 == 0:  # an alternate pronunciation: the last symbol silent
                lines.append(f"{word}\t{pronounce(word).rsplit(' ', 1)[0]}")
        paths[split] = folder / f"{split}.tsv"
        paths[split].write_text("\n".join(lines) + "\n")
    return paths


def pair_args(folder: Path) -> list[str]:
    paths = write_pairs(folder)
    return [f"--data.{split}_path={path}" for split, path in paths.items()] + ["--data.batch_size=16"]


def pair_module(paths: dict[str, Path], **kwargs):
    """A ``Seq2SeqDataModule`` over the train / val / test files of ``write_pairs``."""
    from datamodules.seq2seq import Seq2SeqDataModule

    return Seq2SeqDataModule(*(str(paths[s]) for s in ("train", "val", "test")), **kwargs)


def edit_lines(path: Path, edit) -> None:
    """Rewrite a pair file line by line: ``edit(lines)`` changes the list of its lines (header first) in place."""
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
