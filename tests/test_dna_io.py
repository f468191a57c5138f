import gzip

import numpy as np
import pandas as pd
import pytest

from archbench.errors import DataError
from datamodules.dna_io import encode, from_strings, read_dna, to_strings, write_text

SEQS = ["ACGTN", "acgtacgt", "GGG"]
LABELS = [0.5, -1.25, 3.0]


def test_encode_codes_any_case():
    codes, offsets, bad = encode([b"ACGTN", b"acgtn"])
    assert bad == []
    assert codes.dtype == np.uint8
    assert codes.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert offsets.tolist() == [0, 5, 10]


def test_round_trip_through_text_file(tmp_path):
    data = from_strings(SEQS, LABELS)
    write_text(tmp_path / "d.txt.gz", data)
    back = read_dna(tmp_path / "d.txt.gz")
    assert to_strings(back) == [s.upper() for s in SEQS]
    np.testing.assert_allclose(back.labels, LABELS)
    assert back.values.nbytes == sum(map(len, SEQS))  # one byte per base


def test_subset_gathers_the_right_sequences():
    data = from_strings(SEQS, LABELS)
    part = data.take(np.array([2, 0]))
    assert to_strings(part) == ["GGG", "ACGTN"]
    assert part.labels.tolist() == [3.0, 0.5]


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.csv.gz", "d.parquet", "d.parquet.gz"])
def test_tables_with_named_columns(tmp_path, name):
    frame = pd.DataFrame({"id": [1, 2, 3], "seq": SEQS, "y": LABELS})
    path = tmp_path / name
    if ".parquet" in name:
        frame.to_parquet(tmp_path / "plain.parquet")
        data = (tmp_path / "plain.parquet").read_bytes()
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    else:
        frame.to_csv(path, sep="\t" if ".tsv" in name else ",", index=False)
    data = read_dna(path, sequence_column="seq", label_column="y")
    assert to_strings(data) == [s.upper() for s in SEQS]
    np.testing.assert_allclose(data.labels, LABELS)


def test_gzip_is_detected_from_content_not_name(tmp_path):
    path = tmp_path / "plain_name.txt"
    path.write_bytes(gzip.compress(b"ACGT 1.0\nGGCC 2\n"))
    assert to_strings(read_dna(path)) == ["ACGT", "GGCC"]


def _write(tmp_path, text, name="bad.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ACGT 1\nACXT 2\n", ":2: sequence base 3 is 'X'"),
        ("ACGT 1\nACGT\n", ":2: expected 'SEQUENCE LABEL' (2 fields), found 1"),
        ("ACGT 1\n\nACGT abc\n", ":3: field 'label': 'abc' is not a number"),
        ("ACGT inf\n", ":1: field 'label': 'inf' is not finite"),
        (
            "sequence label\nACGT 1\n",
            "(any case) (a header line? Plain-text files have none: name the file .csv",
        ),
        ("ACGT nan\n", ":1: field 'label': 'nan' is not finite"),
        # trial 30: "1 ACGT" on line 1 was asked "a header line?"
        (
            "1 ACGT\n0 GGCC\n",
            ":1: sequence base 1 is '1', expected one of A, C, G, T, N (any case) (the two "
            "fields swapped? Plain-text lines are 'SEQUENCE LABEL')",
        ),
    ],
)
def test_bad_lines_name_file_line_field_and_value(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as err:
        read_dna(path)
    assert str(err.value).startswith(str(path))
    assert expected in str(err.value)


def test_a_table_without_a_header_line_is_said_to_lack_one(tmp_path):
    """Its first record was taken for the column names (trial 30); a table with other columns is not hinted at."""
    path = _write(tmp_path, "ACGTAC,1\nACGGTA,0\n", "d.csv")
    with pytest.raises(DataError, match=r"d\.csv: column 'sequence' not found; the file has columns \['ACGTAC', '1'\] "
                                        r"\(no header line\? A CSV or TSV file's first line names its columns: add "
                                        r"one that names 'sequence' and 'label'\)$"):  # fmt: skip
        read_dna(path)
    with pytest.raises(DataError, match=r"has columns \['seq', 'y'\]$"):
        read_dna(_write(tmp_path, "seq,y\nACGTAC,1\n", "d.csv"))


def test_class_names_for_labels_are_said_as_such_not_as_lines_to_skip(tmp_path):
    """Trial 32: 'pos'/'neg' on every line was "not a number ... on_bad_line: skip drops them": all of them."""
    path = _write(tmp_path, "seq,cls\nACGT,pos\nACGA,neg\nACGG,pos\n", "d.csv")
    with pytest.raises(DataError, match=r"d\.csv: field 'cls' holds words \('neg', 'pos'\) on every line, not numbers: "
                                        r"DNA labels are numbers \(a value to regress, or class ids 0..K-1\); write each "
                                        r"class as its id \(e.g. neg 0, pos 1\)$"):  # fmt: skip
        read_dna(path, "seq", "cls", on_bad_line="skip")
    # one word among numbers is a bad line, as before
    with pytest.raises(DataError, match=r"d\.csv:3: field 'cls': 'neg' is not a number"):
        read_dna(_write(tmp_path, "seq,cls\nACGT,1\nACGA,neg\n", "d.csv"), "seq", "cls")


def test_a_quote_left_open_names_the_line_it_opens_on(tmp_path):
    """Trial 31: pandas' "EOF inside string starting at row 2", which is line 4 here (a blank line between)."""
    text = 'sequence,label\nACGT,1\n\n"ACGA,2\nACGG,3\n'
    with pytest.raises(DataError, match=r"d\.csv:4: a quote opened on this line is never closed \(the file ends "
                                        r"inside it\)$"):  # fmt: skip
        read_dna(_write(tmp_path, text, "d.csv"))
    packed = tmp_path / "d.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(DataError, match=r"d\.csv\.gz:4: a quote opened on this line"):
        read_dna(packed)


def test_missing_label_in_csv(tmp_path):
    path = _write(tmp_path, "sequence,label\nACGT,1\nACGT,\n", "d.csv")
    with pytest.raises(DataError, match=r"d\.csv:3: field 'label' is missing"):
        read_dna(path)


def test_a_table_with_blank_lines_names_the_bad_records_own_line(tmp_path):
    path = _write(tmp_path, "sequence,label\nACGT,1\n\n   \nACXT,2\n", "d.csv")  # pandas skips lines 3, 4
    with pytest.raises(DataError, match=r"d\.csv:5: sequence base 3 is 'X'"):
        read_dna(path)
    lines = []
    read_dna(_write(tmp_path, "sequence,label\n\nACGT,1\n,\nACGA,2\n", "d.csv"), lines=lines)
    assert np.concatenate(lines).tolist() == [3, 5]
    lines = []  # blank lines before the header too (pandas took the first for the header: no columns)
    read_dna(_write(tmp_path, "\n \nsequence,label\nACGT,1\n\nACGA,2\n", "d.csv"), lines=lines)
    assert np.concatenate(lines).tolist() == [4, 6]


def test_a_delimiter_at_every_lines_end_is_read_and_a_value_past_the_header_is_named(tmp_path):
    """Trial 22: a spreadsheet's export with a comma at each line's end, and a ';'-separated file with decimal
    commas, crashed with pandas' TypeError (it takes the extra field for an index)."""
    lines = []
    text = "\nid,sequence,label\n" + "".join(f"s{i},ACG{'T' * i},{i}.5,\n" for i in range(5)) + "\ns9,AC,2,\n"
    data = read_dna(_write(tmp_path, text, "trailing.csv"), lines=lines)
    assert to_strings(data) == [f"ACG{'T' * i}" for i in range(5)] + ["AC"]
    assert data.labels.tolist() == [0.5, 1.5, 2.5, 3.5, 4.5, 2.0] and np.concatenate(lines).tolist() == [
        3,
        4,
        5,
        6,
        7,
        9,
    ]
    import io

    from datamodules.dna_formats import read_table_chunks

    chunks = list(
        read_table_chunks(io.StringIO(text), "csv", 2)
    )  # rows counted across chunks: line = index + 2
    assert [c.index.tolist() for c in chunks] == [[1, 2], [3, 4], [5], [7]] and chunks[3]["id"].tolist() == [
        "s9"
    ]
    past = "sequence,label\nACGT,1,\nACGT,2,x\n"
    with pytest.raises(DataError, match=r"past.csv: cannot parse as CSV: line 3 has 3 fields where the header has "
                       r"2 \(sequence, label\): 'x' is past its last column$"):  # fmt: skip
        read_dna(_write(tmp_path, past, "past.csv"))
    with pytest.raises(DataError, match=r"line 2 has 2 fields where the header has 1 \(sequence;label\): '5' is "
                       r"past its last column: the header is one field holding ';', a file separated by ';'\?"):  # fmt: skip
        read_dna(_write(tmp_path, "sequence;label\nACGT;1,5\n", "semi.csv"))
    # a value past the last column of one line only: pandas' "C error: Expected 2 fields in line 4, saw 3" said as
    # every reader says it (trial 30)
    with pytest.raises(
        DataError, match=r"one.csv:4: 3 fields, the header has 2 \(a separator inside a value\? "
    ):
        read_dna(_write(tmp_path, "sequence,label\nACGT,1\nACGA,2\nACGG,3,oops\nACGC,4\n", "one.csv"))
    # a column named twice: pandas took the first and renamed the second 'y.1', unsaid (trial 30)
    with pytest.raises(
        DataError, match=r"dup.csv: cannot parse as CSV: line 1: the header names column 'y' twice"
    ):
        read_dna(_write(tmp_path, "seq,y,y\nACGTACGT,1,100\nACGTTTTT,2,200\n", "dup.csv"), "seq", "y")


def test_missing_column_lists_the_columns(tmp_path):
    path = _write(tmp_path, "seq,y\nACGT,1\n", "d.csv")
    with pytest.raises(DataError, match=r"column 'sequence' not found; the file has columns \['seq', 'y'\]"):
        read_dna(path)


@pytest.mark.parametrize(
    "name, text", [("e.txt", ""), ("e.txt", "\n\n"), ("e.csv", ""), ("e.csv", "sequence,label\n")]
)
def test_empty_files(tmp_path, name, text):
    with pytest.raises(DataError, match="is empty"):
        read_dna(_write(tmp_path, text, name))


def test_unreadable_paths(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_dna(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="is a directory"):
        read_dna(tmp_path)
    with pytest.raises(DataError, match="file not found"):
        read_dna(tmp_path / "nope.parquet")


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "c.txt.gz"
    path.write_bytes(gzip.compress(b"ACGT 1\n" * 100)[:30])
    with pytest.raises(DataError, match="corrupt gzip"):
        read_dna(path)


def test_error_counts_further_bad_lines(tmp_path):
    path = _write(tmp_path, "ACGT 1\nAZGT 2\nACGT x\nACGT 3\n")
    with pytest.raises(DataError, match=r":2: .*\(and 1 more bad lines; on_bad_line: skip drops them\)"):
        read_dna(path)


def test_skip_drops_bad_lines_and_says_how_many(tmp_path):
    path = _write(tmp_path, "ACGT 1\nAZGT 2\nACGT x\nGG 3\n")
    with pytest.warns(UserWarning, match=r"skipped 2 of 4 lines .*first: .*:2: "):
        data = read_dna(path, on_bad_line="skip")
    assert to_strings(data) == ["ACGT", "GG"]
    assert data.labels.tolist() == [1.0, 3.0]


def test_skip_with_nothing_left_is_an_error(tmp_path):
    with pytest.raises(DataError, match="all 2 lines are bad"):
        read_dna(_write(tmp_path, "AZ 1\nACGT y\n"), on_bad_line="skip")


def test_unlabelled_file_for_prediction(tmp_path):
    data = read_dna(_write(tmp_path, "ACGT\nGG\n"), labels_required=False)
    assert to_strings(data) == ["ACGT", "GG"]
    assert np.isnan(data.labels).all()


def test_write_is_atomic_and_leaves_no_temporary(tmp_path):
    write_text(tmp_path / "out" / "d.txt", from_strings(SEQS, LABELS))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["d.txt"]


def test_fields_split_across_lines_are_not_misread(tmp_path):
    # 4 fields in all, like a well-formed 2-line file, but 3 on line 1 and 1 on line 2.
    with pytest.raises(DataError, match=r":1: expected 'SEQUENCE LABEL' \(2 fields\), found 3"):
        read_dna(_write(tmp_path, "ACGT 1 2\nACGT\n"))


def test_windows_line_endings_and_blank_lines(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"ACGT 1\r\n\r\nGG\t-2.5\r\n")
    data = read_dna(path)
    assert to_strings(data) == ["ACGT", "GG"] and data.labels.tolist() == [1.0, -2.5]


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_byte_order_mark_is_dropped_and_lines_keep_their_numbers(tmp_path, gzipped):
    text = b"ACGT 1\r\n\r\nGG\t-2.5\r\n"
    pack = gzip.compress if gzipped else bytes
    (tmp_path / "plain.txt").write_bytes(pack(text))
    (tmp_path / "bom.txt").write_bytes(pack(b"\xef\xbb\xbf" + text))
    lines, bom_lines = [], []
    plain, bom = (
        read_dna(tmp_path / "plain.txt", lines=lines),
        read_dna(tmp_path / "bom.txt", lines=bom_lines),
    )
    assert to_strings(bom) == to_strings(plain) == ["ACGT", "GG"]
    assert bom.labels.tolist() == plain.labels.tolist()
    assert np.concatenate(bom_lines).tolist() == np.concatenate(lines).tolist() == [1, 3]
    (tmp_path / "bad.txt").write_bytes(pack(b"\xef\xbb\xbfACGT 1\nACXT 2\n"))
    with pytest.raises(DataError) as err:
        read_dna(tmp_path / "bad.txt")
    assert (
        str(err.value)
        == f"{tmp_path / 'bad.txt'}:2: sequence base 3 is 'X', expected one of A, C, G, T, N (any case)"
    )


@pytest.mark.parametrize("pack", [bytes, gzip.compress])
def test_a_fastq_file_says_what_it_is(tmp_path, pack):
    path = tmp_path / "a.fastq"
    path.write_bytes(pack(b"@seq0\nACGTACGT\n+\nIIIIIIII\n@seq1\nGGCC\n+\nIIII\n"))
    with pytest.raises(DataError) as err:
        read_dna(path, on_bad_line="skip")
    assert str(err.value) == (
        f"{path}:1: a FASTQ record ('@seq0', then its sequence and a '+' line): FASTQ is not read (it has no "
        "labels); write one sequence and its label per line (ACGT... 0.5), or a CSV/TSV with sequence and label "
        "columns"
    )


def test_a_failed_encode_leaves_no_folder(tmp_path):
    from datamodules.dna_io import encode_file

    bad = tmp_path / "bad.txt"
    bad.write_text("ACGT 1\nACGU 2\n")
    with pytest.raises(DataError, match=r"bad.txt:2: "):
        encode_file(bad, tmp_path / "enc")
    assert not (tmp_path / "enc").exists()


@pytest.mark.parametrize(
    "name, data, expected",
    [
        # a Latin-1 byte: the line and byte, as every reader of the project says it
        ("d.txt", b"ACGT 1\nACG\xe9T 2\n", "d.txt:2: not UTF-8 text: sequence byte 4 is 0xe9; save the file as UTF-8"),
        ("d.txt", b"ACGT 1\nACGT 2\xe9\n", "d.txt:2: not UTF-8 text: label byte 2 is 0xe9; save the file as UTF-8"),
        ("d.tsv", b"sequence\tlabel\nACGT\t1\nACGT\t2\xe9\n",
         "d.tsv: not UTF-8 text: byte 29 (line 3) is 0xe9; save the file as UTF-8"),
        # UTF-8 text: the character as written, counted in characters (not bytes, not a chunk's offset)
        ("d.txt", "ACGT 1\nAé\u00e9CT 2\n".encode(), "d.txt:2: sequence base 2 is 'é', expected one of A, C, G"),
        ("d.csv", "sequence,label\nACGT,1\nACé,2\n".encode(), "d.csv:3: sequence base 3 is 'é', expected"),
        # saved as UTF-16 (Windows' "Unicode"): said once, by name, not as a bad line per line
        ("d.txt", "ACGT 1\nACGT 2\n".encode("utf-16"), "d.txt: not UTF-8 text: UTF-16 (it starts with the byte-order"),
        ("d.csv", "sequence,label\nACGT,1\n".encode("utf-16-be").join([b"\xfe\xff", b""]),
         "d.csv: not UTF-8 text: UTF-16 (it starts with the byte-order mark 0xfeff)"),
    ],
)  # fmt: skip
def test_bytes_that_are_not_utf8_and_letters_that_are_not_bases_are_named(tmp_path, name, data, expected):
    for path in (tmp_path / name, tmp_path / f"{name}.gz"):  # gzip: the decompressed bytes are counted
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
        with pytest.raises(DataError) as err:
            read_dna(path)
        assert str(err.value).startswith(f"{path}{expected.removeprefix(name)}")


def test_sequences_given_as_strings_show_the_letter_that_is_not_a_base():
    with pytest.raises(DataError, match=r"<memory>: sequence 2: sequence base 3 is 'é', expected one of"):
        from_strings(["ACGT", "ACéT"], [1.0, 2.0])


def test_encode_builds_a_new_folder_whole_and_refuses_one_that_holds_files(tmp_path):
    from datamodules.dna_io import encode_file

    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("ACGT 1\nACGA 2\n")
    bad.write_text("ACGT 1\nACGU 2\n")
    (tmp_path / "empty").mkdir()
    assert encode_file(good, tmp_path / "empty") == 2  # an empty folder is taken
    before = {p.name: p.read_bytes() for p in (tmp_path / "empty").iterdir()}
    for source in (good, bad):  # a second encoding, good or bad, neither mixes nor deletes the first
        with pytest.raises(
            DataError, match=r"empty: the folder holds files already \(codes.npy, labels.npy, "
        ):
            encode_file(source, tmp_path / "empty")
        assert {p.name: p.read_bytes() for p in (tmp_path / "empty").iterdir()} == before
    assert read_dna(tmp_path / "empty").labels.tolist() == [1.0, 2.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "empty", "good.txt"]  # no scratch left


def test_encode_into_a_link_the_current_folder_or_beside_a_killed_encoding(tmp_path, monkeypatch):
    from datamodules.dna_io import encode_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.txt").write_text("ACGT 1\nACGA 2\n")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert (
        encode_file("g.txt", "link") == 2 and (tmp_path / "real" / "codes.npy").is_file()
    )  # made in its target
    for here in (".", "new/.."):
        with pytest.raises(
            DataError, match=r": is the current folder \(or holds it\); encode into a new folder"
        ):
            encode_file("g.txt", here)
    (tmp_path / ".out.partial-999999999" / "x").mkdir(parents=True)  # a killed encoding's (no such process)
    assert encode_file("g.txt", "out") == 2 and not list(tmp_path.glob(".out.partial-*"))
    assert not (tmp_path / "new").exists()
