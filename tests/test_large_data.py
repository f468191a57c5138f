"""Data larger than memory: encoded DNA folders and token caches read from disk within a memory limit, and
chunked encoding that reports bad lines as reading the whole file does."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_main

from archbench.errors import DataError
from datamodules.dna_io import ENCODED_FILES
from datamodules.storage import StoreWriter

STREAM_CHILD = """
import resource, sys
import numpy as np
from datamodules.dna import DNADataModule

def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

dm = DNADataModule(train_path=sys.argv[1], val_fraction=0.05, test_fraction=0.05, batch_size=4096)
limit = vm("VmData") + int(sys.argv[2])  # private memory may grow this much: less than a third of the data
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
dm.setup("fit")
bases, peak = 0, 0
for batch in dm.train_dataloader():
    bases += int(batch["lengths"].sum())
    peak = max(peak, vm("VmData"))
print(bases, peak <= limit, vm("RssAnon"))
"""


@pytest.mark.slow  # 27 s; the chunked encode under the same limit stays in the default suite
def test_data_several_times_larger_than_the_memory_limit_trains_from_disk(tmp_path):
    from datamodules.dna_io import read_dna

    n, length, headroom = 1_000_000, 250, 64 * 2**20  # 250 MB of bases, 64 MB of room for everything else
    folder = tmp_path / "big"
    writer, rng = StoreWriter(folder, np.uint8, np.float32, ENCODED_FILES), np.random.default_rng(0)
    for start in range(0, n, 50_000):  # the encoded-folder writer 'data encode' uses, a piece at a time
        rows = min(50_000, n - start)
        codes = rng.integers(0, 4, rows * length, dtype=np.uint8)
        writer.append(codes, np.full(rows, length), rng.normal(size=rows).astype(np.float32))
    writer.close()
    assert read_dna(folder).lengths.sum() == n * length > 3 * headroom
    child = subprocess.run(
        [sys.executable, "-c", STREAM_CHILD, str(folder), str(headroom)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    bases, under_limit, _ = child.stdout.split()
    assert int(bases) == round(n * 0.9) * length  # every training sequence was read, under the limit
    assert under_limit == "True"


@pytest.mark.parametrize("suffix", [".txt", ".tsv.gz", ".parquet"])
def test_chunked_encoding_equals_reading_whole_and_names_the_right_line(tmp_path, suffix):
    import pandas as pd

    from datamodules.dna_io import encode_file, read_dna, to_strings

    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGTN"), rng.integers(5, 40))) for _ in range(1000)]
    labels = rng.normal(size=1000).round(4)
    path = tmp_path / f"seqs{suffix}"
    frame = pd.DataFrame({"sequence": seqs, "label": labels})
    if suffix == ".txt":
        path.write_text(
            "".join(
                f"{s} {y}\n" + ("\n" if i % 97 == 0 else "")
                for i, (s, y) in enumerate(zip(seqs, labels, strict=True))
            )
        )
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t", index=False, compression="gzip")
    assert encode_file(path, tmp_path / "enc", chunk_records=64) == 1000
    whole, chunked = read_dna(path), read_dna(tmp_path / "enc")
    assert to_strings(chunked) == to_strings(whole) == [s for s in seqs]
    np.testing.assert_array_equal(chunked.labels, whole.labels)
    # a bad base far into the file: the same message, line and all, as reading it whole
    frame.loc[700, "sequence"] = "ACGU"
    bad = tmp_path / f"bad{suffix}"
    if suffix == ".txt":
        lines = path.read_text().splitlines(keepends=True)
        target = next(i for i, line in enumerate(lines) if line.startswith(seqs[700] + " "))
        lines[target] = f"ACGU {labels[700]}\n"
        bad.write_text("".join(lines))
    elif suffix == ".parquet":
        frame.to_parquet(bad)
    else:
        frame.to_csv(bad, sep="\t", index=False, compression="gzip")
    with pytest.raises(DataError) as whole_error:
        read_dna(bad)
    with pytest.raises(DataError) as chunked_error:
        encode_file(bad, tmp_path / "enc_bad", chunk_records=64)
    assert str(chunked_error.value) == str(whole_error.value) and "base 4 is 'U'" in str(whole_error.value)
    assert not (tmp_path / "enc_bad").exists()  # nothing half-written, not even the folder


ENCODE_CHILD = """
import resource, sys
from datamodules.dna_io import encode_file

def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

limit = vm("VmData") + int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
print(encode_file(sys.argv[1], sys.argv[2], chunk_records=10_000))
"""


def test_a_file_several_times_larger_than_the_memory_limit_encodes_in_chunks(tmp_path):
    n, length, headroom = 400_000, 250, 32 * 2**20  # a 100 MB text file, 32 MB of room
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    with open(tmp_path / "big.txt", "wb") as f:
        for _ in range(n // 50_000):
            rows = np.full((50_000, length + 4), ord(" "), dtype=np.uint8)
            rows[:, :length] = letters[rng.integers(0, 4, (50_000, length))]
            rows[:, length + 1 : length + 3] = np.frombuffer(b"-1", dtype=np.uint8)
            rows[:, -1] = ord("\n")
            f.write(rows.tobytes())
    assert (tmp_path / "big.txt").stat().st_size > 3 * headroom
    child = subprocess.run(
        [sys.executable, "-c", ENCODE_CHILD, str(tmp_path / "big.txt"), str(tmp_path / "enc"), str(headroom)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.split() == [str(n)]


def test_encode_command_round_trip(tmp_path):
    from datamodules.dna_io import read_dna, to_strings

    (tmp_path / "seqs.txt").write_text("ACGT 1.5\nGGNNA -2\nTTT 0\n")
    result = run_main("data", "encode", "--input", "seqs.txt", "--out", "enc", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    encoded = read_dna(tmp_path / "enc")
    assert isinstance(encoded.values, np.memmap)
    assert to_strings(encoded) == ["ACGT", "GGNNA", "TTT"] and encoded.labels.tolist() == [1.5, -2.0, 0.0]
    part = encoded.view(np.array([2, 0]))  # a view: the bases stay on disk
    assert to_strings(part) == ["TTT", "ACGT"] and part.labels_of([0, 1]).tolist() == [0.0, 1.5]
    assert to_strings(part.view(np.array([1]))) == ["ACGT"]
    # the command converts through the chunked encoder: its options reach it
    (tmp_path / "bad.txt").write_text("ACGT 1.5\nACGU 2\nTTT 0\n")
    result = run_main(
        "data", "encode", "--input", "bad.txt", "--out", "enc2", "--on-bad-line", "skip", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert to_strings(read_dna(tmp_path / "enc2")) == ["ACGT", "TTT"]


def test_a_damaged_encoded_folder_names_the_file(tmp_path):
    from datamodules.dna_io import encode_file, read_dna

    (tmp_path / "seqs.txt").write_text("ACGT 1\nGG 2\nT 3\n")
    encode_file(tmp_path / "seqs.txt", tmp_path / "enc")
    np.save(tmp_path / "enc" / "labels.npy", np.zeros(2, dtype=np.float32))
    with pytest.raises(DataError, match=r"enc: labels.npy: 2 labels for 3 sequences"):
        read_dna(tmp_path / "enc")
    (tmp_path / "enc" / "offsets.npy").unlink()
    with pytest.raises(DataError, match=r"enc: not an encoded DNA folder \(missing offsets.npy\)"):
        read_dna(tmp_path / "enc")


TEXT_CHILD = """
import os, resource, sys
from datamodules.text import TextClassificationDataModule

def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

dm = TextClassificationDataModule(train_path=sys.argv[1], tokenizer=sys.argv[2], max_length=64, batch_size=4096)
dm.tokenizer  # loaded before the limit, as the CLI does when it links the vocabulary size
limit = vm("VmData") + int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
dm.prepare_data()
dm.setup("fit")
n = tokens = 0
for batch in dm.train_dataloader():
    n, tokens = n + len(batch["y"]), tokens + int(batch["lengths"].sum())
print(n, tokens)
"""


@pytest.mark.slow
def test_text_larger_than_the_memory_limit_tokenizes_and_trains_from_disk(tmp_path):
    import csv

    from transformers import PreTrainedTokenizerFast

    from datamodules.text_tokenize import train_tokenizer

    # 700,000 texts, 127 MB of CSV, in 64 MB of room. Not more: datasets' `select` (the held-out split) turns
    # its indices into a Python list, about 36 bytes per row while it runs, which the room must hold.
    n, words, headroom = 700_000, 36, 64 * 2**20
    vocabulary = [
        "film",
        "great",
        "boring",
        "actor",
        "plot",
        "story",
        "the",
        "a",
        "was",
        "not",
        "very",
        "and",
    ]
    vocabulary += ["scene", "music", "ending"]
    rng = np.random.default_rng(0)
    with open(tmp_path / "big.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(n // 100_000):
            picks = rng.integers(0, len(vocabulary), (100_000, words))
            writer.writerows(
                [" ".join(vocabulary[j] for j in row), "pos" if row[0] % 2 else "neg"] for row in picks
            )
    assert (tmp_path / "big.csv").stat().st_size > 1.9 * headroom
    backend = train_tokenizer("wordpiece", [vocabulary], vocab_size=120)
    special = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
    PreTrainedTokenizerFast(tokenizer_object=backend, **special).save_pretrained(tmp_path / "tokenizer")
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            TEXT_CHILD,
            str(tmp_path / "big.csv"),
            str(tmp_path / "tokenizer"),
            str(headroom),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ARCHBENCH_CACHE": str(tmp_path / "cache")},
        timeout=900,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    train = n - 2 * round(0.1 * n)  # 10% validation, 10% test held out
    assert child.stdout.split() == [str(train), str(train * (words + 2))]  # every text read: [CLS] w... [SEP]
