import gzip
import json

import pytest

from gram_ray.data import DataError, atomic_writer, is_heldout, iter_jsonl, read_pairs, split_by_prompt


def write_lines(path, lines):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_reads_both_row_formats_and_gzip(tmp_path):
    path = write_lines(
        tmp_path / "pairs.jsonl.gz",
        [
            json.dumps({"id": 1, "prompt": "q", "response_a": "a", "response_b": "b", "label": "B", "prob_a": 0.2}),
            "",
            json.dumps({"prompt": [{"role": "user", "content": "q"}], "chosen": "good", "rejected": "bad"}),
            json.dumps({"pair_id": "j", "question": "q", "response_A": "x", "response_B": "y", "label": "A>B"}),
        ],
    )
    rows, skipped = read_pairs(path)
    assert skipped == [] and [r.line for r in rows] == [1, 3, 4]
    assert rows[0].label == "B" and rows[0].prob_a == 0.2 and rows[0].id == 1
    assert rows[1].pair.response_a == "good" and rows[1].label == "A"
    assert rows[2].id == "j" and rows[2].label == "A"


@pytest.mark.parametrize(
    "row, field",
    [
        ({"response_a": "a", "response_b": "b"}, "prompt"),
        ({"prompt": "", "response_a": "a", "response_b": "b"}, "prompt"),
        ({"prompt": "q", "response_b": "b"}, "response_a"),
        ({"prompt": "q", "response_a": 3, "response_b": "b"}, "response_a"),
        ({"prompt": "q", "chosen": "a"}, "rejected"),
        ({"prompt": "q", "response_a": "a", "response_b": "b", "label": "C"}, "label"),
        ({"prompt": "q", "response_a": "a", "response_b": "b", "prob_a": 2}, "prob_a"),
        ({"prompt": [{"role": "wizard", "content": "x"}], "response_a": "a", "response_b": "b"}, "prompt"),
    ],
)
def test_malformed_rows_name_file_line_and_field(tmp_path, row, field):
    good = json.dumps({"prompt": "q", "response_a": "a", "response_b": "b"})
    path = write_lines(tmp_path / "bad.jsonl", [good, good, json.dumps(row)])
    with pytest.raises(DataError) as info:
        read_pairs(path)
    assert info.value.line == 3 and info.value.field == field
    assert str(info.value).startswith(f"{path}:3: {field}:")


def test_data_error_survives_pickling():
    # Ray ships a worker's exception to the driver by pickling it.
    import pickle

    err = pickle.loads(pickle.dumps(DataError("pairs.jsonl", 7, "chosen", "expected a string, got NoneType")))
    assert isinstance(err, DataError) and (err.path, err.line, err.field) == ("pairs.jsonl", 7, "chosen")
    assert str(err) == "pairs.jsonl:7: chosen: expected a string, got NoneType"


def test_invalid_json_names_the_line(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", ['{"prompt": "q", "response_a": "a", "response_b": "b"}', "{oops", "[1]"])
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        read_pairs(path)


def test_skip_bad_rows_counts_them(tmp_path):
    good = json.dumps({"prompt": "q", "response_a": "a", "response_b": "b"})
    path = write_lines(tmp_path / "mixed.jsonl", [good, "{oops", json.dumps({"prompt": "q"}), good, "[1]"])
    # A syntax error still stops reading: the rest of a broken file cannot be trusted line by line.
    with pytest.raises(DataError):
        read_pairs(path, skip_bad_rows=True)
    path = write_lines(tmp_path / "mixed2.jsonl", [good, json.dumps({"prompt": "q"}), good])
    rows, skipped = read_pairs(path, skip_bad_rows=True)
    assert [r.line for r in rows] == [1, 3] and [e.line for e in skipped] == [2]


def test_atomic_writer_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as f:
            f.write("partial\n")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_writer(target) as f:
        f.write("done\n")
    assert target.read_text() == "done\n"


def test_reads_every_shared_data_file_format():
    from pathlib import Path

    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not data.is_dir():
        pytest.skip("shared data not present")
    for name in ("train_labeled.jsonl.gz", "adapt_hh_harmless.jsonl.gz", "dev_judgebench_claude.jsonl.gz"):
        rows, _ = read_pairs(data / name, limit=20)
        assert len(rows) == 20 and all(r.label in ("A", "B") for r in rows)


def test_split_by_prompt_keeps_each_prompt_on_one_side(tmp_path):
    src = tmp_path / "pairs.jsonl.gz"
    rows = [{"id": f"{p}-{k}", "prompt": f"question {p}", "chosen": "x", "rejected": "y"} for p in range(200) for k in range(3)]
    with gzip.open(src, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    n_train, n_heldout = split_by_prompt(src, tmp_path / "t.jsonl.gz", tmp_path / "h.jsonl", 0.2, seed=1)
    train = [r for _, r in iter_jsonl(tmp_path / "t.jsonl.gz")]
    heldout = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert (n_train, n_heldout) == (len(train), len(heldout)) and n_train + n_heldout == len(rows)
    assert {r["prompt"] for r in train}.isdisjoint({r["prompt"] for r in heldout})
    assert 0.1 < n_heldout / len(rows) < 0.3  # about the fraction asked for
    assert [r["id"] for r in train] == [r["id"] for r in rows if r["prompt"] not in {h["prompt"] for h in heldout}]
    assert [r["id"] for r in heldout] != sorted(r["id"] for r in heldout)  # shuffled, so --limit samples many prompts
    # Deterministic: the same prompt is held out on every run (and for a multi-turn prompt list).
    assert is_heldout("question 7", 0.2) == is_heldout("question 7", 0.2)
    turns = [{"role": "user", "content": "hi"}]
    assert is_heldout(turns, 0.5) == is_heldout(list(turns), 0.5)


def test_splitting_a_train_split_again_needs_another_salt(tmp_path):
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"question {p}", "chosen": "x", "rejected": "y"}) + "\n" for p in range(300)))
    split_by_prompt(src, tmp_path / "t.jsonl", tmp_path / "h.jsonl", 0.3)
    # Same salt: every prompt left in the train split hashes above 0.3, so nothing is held out at 0.2.
    assert split_by_prompt(tmp_path / "t.jsonl", tmp_path / "t2.jsonl", tmp_path / "s.jsonl", 0.2)[1] == 0
    n_train, n_select = split_by_prompt(tmp_path / "t.jsonl", tmp_path / "t2.jsonl", tmp_path / "s.jsonl", 0.2, salt="select")
    assert n_select > 0 and n_train + n_select == len((tmp_path / "t.jsonl").read_text().splitlines())
    # The CLI's --salt gives the same split.
    from gram_ray.cli import main

    assert main(["split", str(tmp_path / "t.jsonl"), "--train-out", str(tmp_path / "c.jsonl"), "--heldout-out",
                 str(tmp_path / "cs.jsonl"), "--heldout-fraction", "0.2", "--salt", "select"]) == 0
    assert (tmp_path / "cs.jsonl").read_text() == (tmp_path / "s.jsonl").read_text()


def test_split_names_the_line_of_a_row_without_prompt(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps({"chosen": "a"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: prompt: missing"):
        split_by_prompt(src, tmp_path / "t.jsonl", tmp_path / "h.jsonl", 0.5)
    assert not (tmp_path / "t.jsonl").exists()
