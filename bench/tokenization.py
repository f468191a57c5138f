"""Tokenizing Rotten Tomatoes (12,752 snippets): the datamodule vs a per-example loop, then the cached run.

Both use the same tokenizer (the shipped MiniLM's WordPiece, ``transformers`` fast tokenizer) on the same
texts with the same truncation, in the same run. The datamodule's time is its whole ``prepare_data`` into an
empty cache (reading the CSVs, checking them, batched tokenization, writing Arrow files); the loop calls the
tokenizer once per text, as a hand-written ``Dataset.__getitem__`` would. The ids are compared one by one.
Also timed: the batched tokenizer calls alone, and the course's loop (one call per text, padded to 512 and
returned as a tensor, as its ``Dataset.__getitem__`` did). Then a second datamodule on the same cache: its ``prepare_data`` + ``setup`` time and how many texts it
passed to the tokenizer (the target is none). Median of 3 alternating repeats. Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from datamodules.text import TextClassificationDataModule
from experiments.data import WHEEL_CACHE, write_minilm, write_rotten_tomatoes

DATA, MODEL = Path("data/rotten_tomatoes"), Path("data/pretrained/all-MiniLM-L6-v2")
MAX_LENGTH, REPEATS = 128, 3


def datamodule(cache: Path) -> TextClassificationDataModule:
    return TextClassificationDataModule(
        **{f"{s}_path": str(DATA / f"{s}.csv") for s in ("train", "val", "test")},
        tokenizer=str(MODEL),
        max_length=MAX_LENGTH,
        cache_dir=str(cache),
    )


def main() -> None:
    if not (DATA / "train.csv").exists():
        write_rotten_tomatoes(DATA, WHEEL_CACHE)
    if not (MODEL / "tokenizer.json").exists():
        write_minilm(MODEL, WHEEL_CACHE)
    import pandas as pd
    from transformers import AutoTokenizer

    texts = [t for s in ("train", "val", "test") for t in pd.read_csv(DATA / f"{s}.csv")["text"]]
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL))
    loop_s, batched_s, course_s, encode_s = [], [], [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        loop_ids = [tokenizer(t, truncation=True, max_length=MAX_LENGTH)["input_ids"] for t in texts]
        loop_s.append(time.perf_counter() - start)
        # The course's Dataset.__getitem__: one call per text, padded to 512, as a tensor.
        start = time.perf_counter()
        for t in texts:
            tokenizer(t, truncation=True, padding="max_length", max_length=512, return_tensors="pt")
        course_s.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as cache:
            dm = datamodule(Path(cache))
            start = time.perf_counter()
            dm.prepare_data()
            batched_s.append(time.perf_counter() - start)
            dm.setup()
            start = time.perf_counter()  # the tokenizer calls alone, batched as the datamodule makes them
            for i in range(0, len(texts), 2000):
                dm.tokenizer.encode_batch(texts[i : i + 2000])
            encode_s.append(time.perf_counter() - start)
            ours = [
                split.values[split.offsets[i] : split.offsets[i + 1]].tolist()
                for split in (dm.splits[s] for s in ("train", "val", "test"))
                for i in range(len(split))
            ]
            calls_first = dm.tokenizer_calls
            again = datamodule(Path(cache))
            start = time.perf_counter()
            again.prepare_data()
            again.setup()
            cached_s = time.perf_counter() - start
            calls_second = again.tokenizer_calls
            same_cache = all(np.array_equal(again.splits[s].values, dm.splits[s].values) for s in dm.splits)
    loop, batched = statistics.median(loop_s), statistics.median(batched_s)
    course, encode = statistics.median(course_s), statistics.median(encode_s)
    print(
        json.dumps(
            {
                "bench": "tokenization",
                "texts": len(texts),
                "per_example_loop_s": round(loop, 3),
                "datamodule_s": round(batched, 3),
                "speedup": round(loop / batched, 2),
                "target_speedup": 10,
                "batched_tokenizer_calls_only_s": round(encode, 3),
                "speedup_tokenizer_calls_only": round(loop / encode, 2),
                "course_style_loop_s": round(course, 3),
                "speedup_vs_course_style_loop": round(course / batched, 2),
                "same_ids": ours == loop_ids,
                "first_run_tokenizer_calls": calls_first,
                "cached_run_s": round(cached_s, 3),
                "cached_run_tokenizer_calls": calls_second,
                "cached_run_same_ids": same_cache,
            }
        )
    )


if __name__ == "__main__":
    main()
