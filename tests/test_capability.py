"""Capability data as the field keeps it (data/records.py, data/capability.py): the same records read alike from JSON
lines, CSV, Parquet and a datasets directory, field names as options, multiple-choice records and their never-known
twin, and every bad file as one line naming where it went wrong."""

from __future__ import annotations

import csv
import json

import pytest
import tiny_lm as T

from wrapperlab.data.capability import CapabilityFields, load_capability, multiple_choice_prompt
from wrapperlab.errors import ConfigError, UserError


def _jsonl(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _csv(path, recs, columns=None):
    columns = columns or list(recs[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows(recs)
    return path


def _parquet(path, recs):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(recs), path)
    return path


def _dataset(path, recs, splits=None):
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_list(recs)
    if splits:
        data = datasets.DatasetDict({name: data for name in splits})
    data.save_to_disk(str(path))
    return path


def _pairs(cap):
    return [(e.prompt, e.answer, e.letters) for e in cap.examples]


def test_every_format_reads_the_same_records(tmp_path):
    recs = T.records()
    want = [(r["prompt"], r["answer"], ()) for r in recs]
    for path in (_jsonl(tmp_path / "c.jsonl", recs), _csv(tmp_path / "c.csv", recs),
                 _parquet(tmp_path / "c.parquet", recs), _dataset(tmp_path / "ds", recs)):
        cap = load_capability(path)
        assert _pairs(cap) == want and not cap.multiple_choice, path
    two = _dataset(tmp_path / "two", recs, splits=["train", "test"])
    assert _pairs(load_capability(two, CapabilityFields(split="test"))) == want
    assert load_capability(tmp_path / "c.csv").examples[0].line == 2  # the header is line 1: errors name lines
    renamed = [{"input": r["prompt"], "target": r["answer"], "extra": 1} for r in recs]
    fields = CapabilityFields(prompt="input", answer="target")
    assert _pairs(load_capability(_jsonl(tmp_path / "r.jsonl", renamed), fields)) == want


def test_multiple_choice_records_and_their_twin(tmp_path):
    recs = T.choice_records()
    letters = ("A", "B", "C", "D")
    as_columns = [{"question": r["question"], **dict(zip(letters, r["choices"])), "answer": letters[r["answer"]]}
                  for r in recs]
    from_json = load_capability(_jsonl(tmp_path / "mc.jsonl", recs))
    from_csv = load_capability(_csv(tmp_path / "mc.csv", as_columns), CapabilityFields(choices="A,B,C,D"))
    from_list_cell = load_capability(_csv(tmp_path / "cell.csv", [{**r, "choices": json.dumps(r["choices"])}
                                                                  for r in recs]))
    assert from_json.multiple_choice and _pairs(from_json) == _pairs(from_csv) == _pairs(from_list_cell)
    first = from_json.examples[0]
    assert first.prompt == multiple_choice_prompt("Q k0 =", recs[0]["choices"])
    assert first.prompt.endswith("\nD. " + recs[0]["choices"][3] + "\nAnswer:") and first.letters == letters
    assert [e.answer for e in from_json.examples] == [letters[r["answer"]] for r in recs]
    twin = from_json.never_known(seed=5)
    assert all(t.answer != e.answer and t.answer in e.letters and t.prompt == e.prompt
               for t, e in zip(twin.examples, from_json.examples))
    assert _pairs(twin) == _pairs(from_json.never_known(seed=5)) != _pairs(from_json.never_known(seed=6))
    if pytest.importorskip("pyarrow"):
        assert _pairs(load_capability(_parquet(tmp_path / "mc.parquet", recs))) == _pairs(from_json)


def test_bad_capability_files_are_one_line(tmp_path):
    good = T.records()
    mc = T.choice_records()
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(bytes(range(256)) * 4)
    torn = _parquet(tmp_path / "t.parquet", good)
    torn.write_bytes(torn.read_bytes()[:100])
    cases = [
        (_jsonl(tmp_path / "empty.jsonl", []), {}, "0 records"),
        (binary, {}, "not UTF-8 text"),
        (_jsonl(tmp_path / "nofield.jsonl", [{"prompt": "q"}] * 9), {}, "answer: got 'missing'"),
        (_jsonl(tmp_path / "one.jsonl", [{"prompt": f"q{i}", "answer": "a"} for i in range(9)]), {}, "at least two"),
        (_jsonl(tmp_path / "range.jsonl", [{**mc[0], "answer": 4}] * 9), {}, "an index 0..3"),
        (_jsonl(tmp_path / "bool.jsonl", [{**mc[0], "answer": True}] * 9), {}, "an index 0..3"),
        (_jsonl(tmp_path / "onechoice.jsonl", [{**mc[0], "choices": ["v1"]}] * 9), {}, "2 to 26"),
        (_jsonl(tmp_path / "noq.jsonl", [{"choices": ["a", "b"], "answer": 0}] * 9), {}, "question: got 'missing'"),
        (torn, {}, "unreadable Parquet"),
        (_csv(tmp_path / "renamed.csv", [{"prompt": "q", "answer": "a"}] * 9), {"prompt": "input"}, "--prompt-field"),
        (tmp_path / "missing.jsonl", {}, "no such capability file"),
        (_jsonl(tmp_path / "c.xlsx", good), {}, "a .xlsx file"),
        (_jsonl(tmp_path / "c.jsonl", good), {"split": "test"}, "not a datasets directory"),
    ]
    (tmp_path / "notds").mkdir()
    cases.append((tmp_path / "notds", {}, "not one `datasets` saved"))
    if pytest.importorskip("datasets"):
        cases.append((_dataset(tmp_path / "two", good, ["train", "test"]), {}, "splits ['test', 'train']"))
    for path, fields, message in cases:
        with pytest.raises((ConfigError, UserError)) as e:
            load_capability(path, CapabilityFields(**fields))
        assert message in str(e.value) and "\n" not in str(e.value), (path, str(e.value))
        assert path.name in str(e.value), (path, str(e.value))  # the file is named (issue 34: binary ones were not)


def test_a_csv_with_a_byte_order_mark_reads_its_first_field(tmp_path):
    """Excel saves CSV with a UTF-8 byte-order mark, which stuck to the first column's name: 'prompt: missing'."""
    plain = _csv(tmp_path / "plain.csv", T.records())
    marked = tmp_path / "marked.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert _pairs(load_capability(marked)) == _pairs(load_capability(plain))
