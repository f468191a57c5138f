"""A tiny corpus for the language-model tests: three short 'novels' in a folder, written in the test's folder."""

from pathlib import Path

SENTENCES = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune must be in want of a wife.",
    "Emma Woodhouse, handsome, clever, and rich, seemed to unite some of the best blessings of existence.",
    "No one who had ever seen Catherine Morland in her infancy would have supposed her born to be an heroine.",
]


def tiny_corpus(folder: Path, repeats: int = 6, encoding: str = "utf-8", newline: str = "\n") -> Path:
    """Three documents (1-first.txt, 2-second.txt, 3-third.txt), each a sentence repeated over lines; saved
    as Windows tools may (``encoding="utf-8-sig"``: a byte-order mark, ``newline="\\r\\n"``) on request."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, sentence) in enumerate(zip(("first", "second", "third"), SENTENCES, strict=True)):
        text = "\n".join([sentence] * repeats) + "\n"
        (folder / f"{i + 1}-{name}.txt").write_text(text, encoding=encoding, newline=newline)
    return folder


def lm_args(folder: Path, context: int = 16) -> list[str]:
    return [f"--data.train_path={tiny_corpus(folder)}", "--data.tokenizer=char", f"--data.context_length={context}",
            "--data.batch_size=4"]  # fmt: skip
