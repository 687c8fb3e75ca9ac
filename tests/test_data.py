"""Datasets for classification studies (benchmark/data/): every format reads the same items, the
column mapping and label maps work, user mistakes are ShootoutErrors naming the file and the
column, splits are stratified and reproducible, and the example datasets read with their counts."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from benchmark.data import few_shot, merge_labels, read_items, split_items, summarize
from benchmark.tasks.base import Item
from core.errors import ShootoutError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# texts a reader must keep intact: commas, quotes, apostrophes, accents, emoji, Japanese
ROWS = [
    ("a1", "Shares rose 5%, beating forecasts.", "positive"),
    ("a2", 'The CEO said "no comment" and left.', "neutral"),
    ("a3", "Café owners can't keep up 🎉", "positive"),
    ("a4", "株価は大幅に下落した。", "negative"),
    ("a5", "Ärger über die Zölle; Exporte brechen ein", "negative"),
    ("a6", "  leading and trailing spaces stay  ", "neutral"),
]


def triples(items):
    return [(it.id, it.text, it.label) for it in items]


def write_csv(path: Path, header, rows, delimiter=","):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def write_jsonl(path: Path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def error_of(fn, *args, **kw) -> str:
    with pytest.raises(ShootoutError) as exc:
        fn(*args, **kw)
    return str(exc.value)


# --------------------------------------------------------------------------- formats


def test_every_format_reads_the_same_items(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [{"id": i, "text": t, "label": lab} for i, t, lab in ROWS]
    files = {
        "csv": write_csv(tmp_path / "d.csv", ["id", "text", "label"], ROWS),
        "tsv": tmp_path / "d.tsv",
        "jsonl": write_jsonl(tmp_path / "d.jsonl", records),
        "json list": tmp_path / "list.json",
        "json object": tmp_path / "object.json",
        "parquet": tmp_path / "d.parquet",
    }
    # TSV as GLUE writes it: no quoting, quote characters are text
    files["tsv"].write_text("id\ttext\tlabel\n" + "".join(f"{i}\t{t}\t{lab}\n" for i, t, lab in ROWS),
                            encoding="utf-8")
    files["json list"].write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    files["json object"].write_text(json.dumps({"version": 2, "data": records}, ensure_ascii=False),
                                    encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(records), files["parquet"])

    alpaca = [{"id": i, "instruction": "Classify the sentiment.", "input": t, "output": f" {lab}\n"}
              for i, t, lab in ROWS]
    sharegpt = [{"id": i, "conversations": [{"from": "system", "value": "Answer with one word."},
                                            {"from": "human", "value": t}, {"from": "gpt", "value": lab}]}
                for i, t, lab in ROWS]
    (tmp_path / "alpaca.json").write_text(json.dumps(alpaca, ensure_ascii=False), encoding="utf-8")
    write_jsonl(tmp_path / "alpaca.jsonl", alpaca)
    write_jsonl(tmp_path / "sharegpt.jsonl", sharegpt)

    expected = list(ROWS)
    for name, path in files.items():
        assert triples(read_items(path, id="id")) == expected, name
    assert triples(read_items(tmp_path / "alpaca.json", format="alpaca", id="id")) == expected
    assert triples(read_items(tmp_path / "alpaca.jsonl", format="alpaca", id="id")) == expected
    got = read_items(tmp_path / "sharegpt.jsonl", format="sharegpt", id="id")
    assert triples(got) == expected
    assert got[0].fields == {"system": "Answer with one word."}

    # without an id column the ids are stable hashes, the same for every tabular format
    hashed = [triples(read_items(files[n])) for n in ("csv", "jsonl", "parquet", "json list")]
    assert all(h == hashed[0] for h in hashed)
    ids = [i for i, _, _ in hashed[0]]
    assert len(set(ids)) == len(ids) and all(len(i) == 12 for i in ids)
    assert triples(read_items(files["csv"])) == hashed[0]  # same file, same ids

    # a folder of class subfolders holds the same texts and labels
    for n, (_, t, lab) in enumerate(ROWS):
        (tmp_path / "folder" / lab).mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / lab / f"{n}.txt").write_text(t.strip() + "\n", encoding="utf-8")
    folder = read_items(tmp_path / "folder")
    assert sorted((it.text, it.label) for it in folder) == sorted((t.strip(), lab) for _, t, lab in ROWS)


def test_japanese_text_round_trips_in_every_writer(tmp_path):
    text = "東京株式市場で日経平均株価は続落、終値は前日比312円安。🙂"
    write_csv(tmp_path / "ja.csv", ["text", "label"], [(text, "ネガティブ")])
    write_jsonl(tmp_path / "ja.jsonl", [{"text": text, "label": "ネガティブ"}])
    for p in ("ja.csv", "ja.jsonl"):
        (item,) = read_items(tmp_path / p)
        assert item.text == text and item.label == "ネガティブ"
    # a byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name
    (tmp_path / "bom.csv").write_bytes("\ufefftext,label\n".encode("utf-8") + f"{text},x\n".encode("utf-8"))
    assert read_items(tmp_path / "bom.csv")[0].text == text


def test_column_mapping_fields_and_label_map(tmp_path):
    path = write_csv(tmp_path / "sst.csv", ["sentence", "polarity", "source", "idx"],
                     [("a gripping , generous film", "1", "web", "7"), ("dull and slack", " 0 ", "paper", "8")])
    items = read_items(path, text="sentence", label="polarity", id="idx", fields=("source",),
                       label_map={0: "negative", 1: "positive"})
    assert [(it.id, it.text, it.label, it.fields) for it in items] == [
        ("7", "a gripping , generous film", "positive", {"source": "web"}),
        ("8", "dull and slack", "negative", {"source": "paper"})]
    # unlabelled: label=None
    assert [it.label for it in read_items(path, text="sentence", label=None)] == [None, None]


def test_labels_are_strings_whatever_the_file_stores(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_jsonl(tmp_path / "n.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 0.0},
                                       {"text": "c", "label": " pos "}])
    assert [it.label for it in read_items(tmp_path / "n.jsonl")] == ["1", "0", "pos"]
    pq.write_table(pa.table({"text": ["a", "b"], "label": [1, 0]}), tmp_path / "n.parquet")
    assert [it.label for it in read_items(tmp_path / "n.parquet")] == ["1", "0"]
    write_csv(tmp_path / "n.csv", ["text", "label"], [("a", "01"), ("NA", "null")])
    items = read_items(tmp_path / "n.csv")  # no number or NA parsing: what is written is read
    assert [(it.text, it.label) for it in items] == [("a", "01"), ("NA", "null")]


def test_split_column_is_read_and_kept_by_split_items(tmp_path):
    rows = [(f"t{i}", "x" if i % 2 else "y", s) for i, s in enumerate(["train", "dev", "TEST", "", "", "", "", ""])]
    items = read_items(write_csv(tmp_path / "s.csv", ["text", "label", "part"], rows), split="part")
    assert [it.split for it in items][:4] == ["train", "validation", "test", None]
    out = split_items(items, seed=1)
    assert [it.split for it in out][:3] == ["train", "validation", "test"]
    assert all(it.split for it in out)


def test_kaggle_sarcasm_file_named_json_is_read_as_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "Sarcasm_Headlines_Dataset.json", [
        {"article_link": "https://example.com/a", "headline": "area man wins", "is_sarcastic": 1},
        {"article_link": "https://example.com/b", "headline": "rates unchanged", "is_sarcastic": 0}])
    items = read_items(path, text="headline", label="is_sarcastic", fields=("article_link",))
    assert [(it.text, it.label, it.fields["article_link"]) for it in items] == [
        ("area man wins", "1", "https://example.com/a"), ("rates unchanged", "0", "https://example.com/b")]


def test_alpaca_and_sharegpt_details(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [
        {"instruction": "Is this spam? Give me $5 now!", "input": "", "output": "spam"},
        {"instruction": "Label the text.", "input": "Town hall at 7.", "output": "ham "}])
    a = read_items(tmp_path / "a.jsonl", format="alpaca")
    assert [(it.text, it.label) for it in a] == [("Is this spam? Give me $5 now!", "spam"), ("Town hall at 7.", "ham")]
    assert a[1].fields == {"instruction": "Label the text."} and a[0].fields == {}

    conv = {"messages": [{"role": "system", "content": "Label it."}, {"role": "user", "content": "first"},
                         {"role": "assistant", "content": "A"}, {"role": "user", "content": "second"},
                         {"role": "assistant", "content": " B "}]}
    (tmp_path / "s.json").write_text(json.dumps([conv]), encoding="utf-8")
    (item,) = read_items(tmp_path / "s.json", format="sharegpt")
    assert (item.text, item.label) == ("second", "B")
    write_jsonl(tmp_path / "bad.jsonl", [{"conversations": [{"from": "human", "value": "hi"}]}])
    assert "line 1" in error_of(read_items, tmp_path / "bad.jsonl", format="sharegpt")


# --------------------------------------------------------------------------- user mistakes


def test_missing_column_names_the_column_and_the_file(tmp_path):
    path = write_csv(tmp_path / "reviews.csv", ["sentence", "label"], [("fine", "1")])
    msg = error_of(read_items, path)
    assert "reviews.csv" in msg and "'text'" in msg and "'sentence'" in msg
    msg = error_of(read_items, path, text="sentence", fields=("url",))
    assert "'url'" in msg and "reviews.csv" in msg
    write_jsonl(tmp_path / "r.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    msg = error_of(read_items, tmp_path / "r.jsonl")
    assert "r.jsonl, line 2" in msg and "'label'" in msg


def test_unmapped_label_names_the_label_and_the_file(tmp_path):
    path = write_csv(tmp_path / "sst.csv", ["text", "label"], [("a", "0"), ("b", "1"), ("c", "2")])
    msg = error_of(read_items, path, label_map={"0": "negative", "1": "positive"})
    assert "'2'" in msg and "sst.csv" in msg and "'0'" not in msg.split("hint")[0]


def test_row_level_mistakes_name_the_row(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["id", "text", "label"], [("1", "ok", "a"), ("2", "   ", "b")])
    assert "d.csv, row 2" in error_of(read_items, path, id="id")
    path = write_csv(tmp_path / "e.csv", ["id", "text", "label"], [("1", "ok", "a"), ("2", "fine", "")])
    assert "e.csv, row 2" in error_of(read_items, path) and "label" in error_of(read_items, path)
    path = write_csv(tmp_path / "f.csv", ["id", "text", "label"], [("x1", "a", "a"), ("x1", "b", "b")])
    msg = error_of(read_items, path, id="id")
    assert "duplicate id 'x1'" in msg and "row 1" in msg and "row 2" in msg


def test_file_that_is_not_utf8_names_file_and_encoding(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nna\xefve caf\xe9,pos\n".encode("cp1252"))
    msg = error_of(read_items, path)
    assert "latin.csv" in msg and "utf-8" in msg and "line 2" in msg and "encoding" in msg
    assert read_items(path, encoding="cp1252")[0].text == "naïve café"
    assert "unknown encoding" in error_of(read_items, path, encoding="klingon")


def test_malformed_files_give_shootout_errors(tmp_path):
    (tmp_path / "bad.json").write_text('[{"text": "a", "label": "x"},', encoding="utf-8")
    assert "bad.json" in error_of(read_items, tmp_path / "bad.json")
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": "x"}\n[1, 2]\n', encoding="utf-8")
    assert "bad.jsonl, line 2" in error_of(read_items, tmp_path / "bad.jsonl")
    (tmp_path / "two.json").write_text('{"a": [{"text": "x"}], "b": [{"text": "y"}]}', encoding="utf-8")
    assert "exactly one list" in error_of(read_items, tmp_path / "two.json")
    (tmp_path / "bad.tsv").write_text("text\tlabel\na\tb\tc\n", encoding="utf-8")
    assert "bad.tsv" in error_of(read_items, tmp_path / "bad.tsv")
    (tmp_path / "fake.parquet").write_text("text,label\na,b\n", encoding="utf-8")
    assert "Parquet" in error_of(read_items, tmp_path / "fake.parquet")
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    assert "empty" in error_of(read_items, tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("text,label\n", encoding="utf-8")
    assert "no items" in error_of(read_items, tmp_path / "header.csv")
    (tmp_path / "data.xlsx").write_text("x", encoding="utf-8")
    assert "format" in error_of(read_items, tmp_path / "data.xlsx")
    assert "not found" in error_of(read_items, tmp_path / "missing.csv")
    assert "unknown dataset format" in error_of(read_items, tmp_path / "bad.json", format="xml")


# --------------------------------------------------------------------------- folder (livedoor)


def write_livedoor(root: Path, genres: dict[str, int]) -> None:
    (root).mkdir(parents=True, exist_ok=True)
    (root / "LICENSE.txt").write_text("license", encoding="utf-8")
    (root / "README.txt").write_text("readme", encoding="utf-8")
    for g, n in genres.items():
        (root / g).mkdir()
        (root / g / "LICENSE.txt").write_text("per-genre license", encoding="utf-8")
        (root / g / ".DS_Store").write_bytes(b"\x00\x01")
        for k in range(1, n + 1):
            (root / g / f"{g}-{k}.txt").write_text(
                f"https://news.example.jp/{g}/{k}/\n2024-01-0{k}T09:00:00+09:00\n{g}の見出し{k}\n"
                f"本文の一文目です。\n二文目です。\n", encoding="utf-8")


def test_folder_layout_with_livedoor_header_lines(tmp_path):
    write_livedoor(tmp_path / "ldcc", {"sports-watch": 2, "it-life-hack": 3})
    items = read_items(tmp_path / "ldcc", header_lines=3)
    assert Counter(it.label for it in items) == {"it-life-hack": 3, "sports-watch": 2}
    first = items[0]
    assert first.label == "it-life-hack"
    assert first.text == "本文の一文目です。\n二文目です。"
    assert first.fields == {"file": "it-life-hack/it-life-hack-1.txt", "url": "https://news.example.jp/it-life-hack/1/",
                            "date": "2024-01-01T09:00:00+09:00", "title": "it-life-hackの見出し1"}
    with_title = read_items(tmp_path / "ldcc", header_lines=3, title_in_text=True)
    assert with_title[0].text == "it-life-hackの見出し1\n本文の一文目です。\n二文目です。"
    assert [it.id for it in with_title] == [it.id for it in items]  # ids from the file path
    # Windows line endings: the same fields and text
    crlf = tmp_path / "ldcc" / "it-life-hack" / "it-life-hack-1.txt"
    crlf.write_bytes(crlf.read_bytes().replace(b"\n", b"\r\n"))
    assert read_items(tmp_path / "ldcc", header_lines=3)[0] == first
    # without header lines the whole file is the text
    assert read_items(tmp_path / "ldcc")[0].text.startswith("https://news.example.jp/")
    assert "header_names" in error_of(read_items, tmp_path / "ldcc", header_lines=4)
    assert "folder" in error_of(read_items, tmp_path / "ldcc" / "sports-watch" / "sports-watch-1.txt",
                                format="csv", header_lines=3)
    (tmp_path / "ldcc" / "smax").mkdir()
    (tmp_path / "ldcc" / "smax" / "smax-1.txt").write_text("https://x/\n2024-01-01\ntitle only\n", encoding="utf-8")
    msg = error_of(read_items, tmp_path / "ldcc", header_lines=3)
    assert "smax-1.txt" in msg and "header lines" in msg


# --------------------------------------------------------------------------- labels, splits, few-shot


def labelled(counts: dict[str, int]) -> list[Item]:
    return [Item(id=f"{lab}-{i}", text=f"{lab} text {i}", label=lab) for lab, n in counts.items() for i in range(n)]


def test_merge_labels_both_map_forms():
    items = labelled({"strongly_for": 2, "for": 1, "neutral": 1, "against": 3})
    grouped = {"for": ["strongly_for", "for"], "neutral": ["neutral"], "against": ["against"]}
    flat = {"strongly_for": "for", "for": "for", "neutral": "neutral", "against": "against"}
    for m in (grouped, flat):
        out = merge_labels(items, m)
        assert Counter(it.label for it in out) == {"for": 3, "neutral": 1, "against": 3}
        assert out[0].fields["original_label"] == "strongly_for"
    msg = error_of(merge_labels, items, {"strongly_for": "for"})
    assert "'against'" in msg and "'neutral'" in msg and "'for'" in msg
    kept = merge_labels(items, {"strongly_for": "for"}, keep_unmapped=True)
    assert Counter(it.label for it in kept) == {"for": 3, "neutral": 1, "against": 3}


def test_split_is_stratified_within_one_item_and_reproducible():
    counts = {"a": 53, "b": 31, "c": 7, "d": 21, "e": 37}
    items = labelled(counts)
    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
    out = split_items(items, fractions, seed=0)
    assert [it.id for it in out] == [it.id for it in items]  # order kept
    for lab, n in counts.items():
        for split, f in fractions.items():
            got = sum(1 for it in out if it.label == lab and it.split == split)
            assert abs(got - n * f) <= 1, (lab, split, got, n * f)
    assert split_items(items, fractions, seed=0) == out
    assert split_items(items, fractions, seed=1) != out
    summary = summarize(out)
    assert sum(s["items"] for s in summary["splits"].values()) == len(items)
    assert summary["splits"]["train"]["items"] == pytest.approx(0.8 * len(items), abs=2)


def test_split_with_tiny_classes_does_not_crash_and_fractions_must_sum_to_one():
    items = labelled({"big": 12, "pair": 2, "one": 1, "other": 1})
    out = split_items(items, {"train": 0.5, "validation": 0.25, "test": 0.25}, seed=3)
    assert len(out) == 16 and all(it.split in {"train", "validation", "test"} for it in out)
    for lab, n in {"big": 12, "pair": 2}.items():
        for split, f in {"train": 0.5, "validation": 0.25, "test": 0.25}.items():
            got = sum(1 for it in out if it.label == lab and it.split == split)
            assert abs(got - n * f) <= 1
    assert split_items(labelled({"a": 1}), seed=0)[0].split == "train"
    assert "sum to 1" in error_of(split_items, items, {"train": 0.8, "test": 0.1})
    assert "between 0 and 1" in error_of(split_items, items, {"train": 1.2, "test": -0.2})


def test_few_shot_k_per_class_deterministic_and_interleaved():
    items = labelled({"neg": 10, "neu": 6, "pos": 8})
    shots = few_shot(items, 3, seed=7)
    assert Counter(it.label for it in shots) == {"neg": 3, "neu": 3, "pos": 3}
    assert len({it.id for it in shots}) == 9
    assert few_shot(list(reversed(items)), 3, seed=7) == shots  # input order does not matter
    assert few_shot(items, 3, seed=8) != shots
    labels = [it.label for it in shots]
    assert all(a != b for a, b in zip(labels, labels[1:]))  # no class twice in a row
    assert sorted(labels[:3]) == ["neg", "neu", "pos"]      # one of each per round
    assert [it.label for it in few_shot(items, 2, seed=7, labels=["pos", "neg"])].count("neu") == 0
    msg = error_of(few_shot, items, 7, seed=0)
    assert "'neu' (6)" in msg and "pos" not in msg.split("hint")[0].replace("'neu' (6)", "")


def test_summarize_counts_splits_and_labels():
    items = [Item(id="1", text="a", label="x", split="test"), Item(id="2", text="b", label="y", split="train"),
             Item(id="3", text="c", label="x", split="train"), Item(id="4", text="d")]
    assert summarize(items) == {
        "items": 4, "labels": {"unlabelled": 1, "x": 2, "y": 1},
        "splits": {"train": {"items": 2, "labels": {"x": 1, "y": 1}}, "test": {"items": 1, "labels": {"x": 1}},
                   "unsplit": {"items": 1, "labels": {"unlabelled": 1}}}}


# --------------------------------------------------------------------------- the example datasets


def test_example_spam():
    ev = read_items(EXAMPLES / "spam/data/eval.csv", id="id")
    tr = read_items(EXAMPLES / "spam/data/train.csv", id="id")
    assert Counter(it.label for it in ev) == {"spam": 39, "ham": 11}
    assert Counter(it.label for it in tr) == {"spam": 12, "ham": 12}
    assert not {it.text for it in ev} & {it.text for it in tr}


def test_example_sst2():
    m = {"0": "negative", "1": "positive"}
    for name in ("train.tsv", "dev.tsv"):
        items = read_items(EXAMPLES / "sst2/data" / name, text="sentence", label_map=m)
        assert Counter(it.label for it in items) == {"negative": 20, "positive": 20}
    assert (EXAMPLES / "sst2/data/dev.tsv").read_text(encoding="utf-8").startswith("sentence\tlabel\n")


def test_example_stance_with_definitions_and_merge():
    items = read_items(EXAMPLES / "stance/data/stance.csv", text="sentence", label="stance", id="id")
    spec = YAML(typ="safe").load((EXAMPLES / "stance/data/definitions.yaml").read_text(encoding="utf-8"))
    counts = Counter(it.label for it in items)
    assert len(items) == 70 and set(counts) == set(spec["labels"]) and min(counts.values()) >= 6
    assert all(isinstance(d, str) and d.endswith(".") for d in spec["labels"].values())
    merged = merge_labels(items, spec["merge"])
    assert Counter(it.label for it in merged) == {"for": 30, "neutral": 10, "against": 30}


def test_example_sarcasm():
    items = read_items(EXAMPLES / "sarcasm/data/headlines.jsonl", text="headline", label="is_sarcastic",
                       fields=("article_link",))
    counts = Counter(it.label for it in items)
    assert counts == {"1": 36, "0": 44}
    assert all(".example." in it.fields["article_link"] for it in items)


def test_example_japanese_news():
    items = read_items(EXAMPLES / "japanese_news/data", header_lines=3)
    counts = Counter(it.label for it in items)
    assert counts == {g: 5 for g in ("dokujo-tsushin", "it-life-hack", "kaden-channel", "livedoor-homme", "movie-enter",
                                     "peachy", "smax", "sports-watch", "topic-news")}
    for it in items:
        assert it.fields["url"].startswith("https://news.example.jp/")
        assert it.fields["date"].startswith("20") and "T" in it.fields["date"]
        assert it.fields["title"] and it.text.count("。") >= 2
    assert any("ロボット掃除機" in it.fields["title"] for it in items if it.label == "kaden-channel")


def test_example_files_are_small():
    for p in EXAMPLES.rglob("*"):
        if p.is_file():
            assert p.stat().st_size < 40_000, p


# --------------------------------------------------------------------------- fuzz


FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read_or_shootout_error(path: Path, **kw) -> None:
    try:
        items = read_items(path, **kw)
    except ShootoutError:
        return
    assert items and all(isinstance(it, Item) and it.text.strip() for it in items)


@FUZZ
@given(body=st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_fuzz_csv_reads_or_raises_shootout_error(tmp_path, body):
    path = tmp_path / "fuzz.csv"
    path.write_text("text,label\n" + body, encoding="utf-8")
    read_or_shootout_error(path)
    path.write_bytes(body.encode("latin-1", errors="replace"))
    read_or_shootout_error(path, label=None)


@FUZZ
@given(lines=st.lists(st.one_of(
    st.text(max_size=40),
    st.dictionaries(st.sampled_from(["text", "label", "id", "x"]),
                    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10),
                              st.lists(st.integers(), max_size=2)), max_size=4).map(json.dumps)), max_size=6))
def test_fuzz_jsonl_reads_or_raises_shootout_error(tmp_path, lines):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    read_or_shootout_error(path)
    read_or_shootout_error(path, id="id")
    read_or_shootout_error(path, format="sharegpt")
