"""scripts/length_split.py: committed predictions split by which visible response is longer (no model)."""

import json

import pytest

from scripts import length_split


def test_split_of_predictions_matches_their_rows(tmp_path, smol_tokenizer):
    rows = [
        {"prompt": "q0", "response_a": "A long and careful answer.", "response_b": "No.", "label": "A"},  # longer wins
        {"prompt": "q1", "response_a": "Yes.", "response_b": "A long, wrong and rambling answer.", "label": "A"},  # shorter wins
        {"prompt": "q2", "response_a": "Short.", "response_b": "Also a longer reply.", "label": "B"},  # longer wins
    ]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = [0.8, 0.3, 0.4]  # right, wrong (picks the longer), right
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"line": i + 1, "label": r["label"], "p_a_better": x, "p_ab": x, "p_ba": x})
                                   + "\n" for i, (r, x) in enumerate(zip(rows, p, strict=True))))
    result = length_split.split_of(predictions, data, 0, None, smol_tokenizer)
    assert result["n"] == 3 and result["accuracy"] == pytest.approx(2 / 3)
    assert (result["longer_wins"]["n"], result["longer_wins"]["accuracy"]) == (2, 1.0)
    assert (result["shorter_wins"]["n"], result["shorter_wins"]["accuracy"]) == (1, 0.0)
    assert result["agrees_with_longer"] == 1.0
    table = length_split.table([{"judge": "j", "rows": "fixture", **result}])
    assert "| `j` | fixture | 3 | 0.667 | 1.000 (" in table and "0.000 (" in table

    with pytest.raises(SystemExit, match="not rows"):  # predictions of other rows are refused
        length_split.split_of(predictions, data, 1, 2, smol_tokenizer)
