"""How much of each judge's accuracy is length: committed predictions split by which response is longer.

    python scripts/length_split.py   # prints the table and writes it into MODEL_CARD.md

The labels of train_labeled favour the longer response, so in-domain accuracy mostly measures
length. For each judge whose per-pair predictions are committed (docs/default_eval/, docs/trials/,
docs/ablation/), this scores the same verdicts apart on the pairs where the longer visible response (both cut
to 256 tokens, the budget every one of these judges was trained and scored at) is the better one and
where the shorter is, with `gram_ray.eval.metrics.length_split` (what `gram-ray eval` now reports in
metrics.json). A length detector scores 1 and 0 there; a judge that reads the content scores well on both.
No model runs: only the tokenizer, to cut the responses as the judge saw them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.ablation import ROOT, SPLITS, make_splits, write_table_into  # noqa: E402
from scripts.hh_adaptation_trial import HH_SELECT, ROWS, make_hh_select  # noqa: E402

BUDGET = 256
HELDOUT = SPLITS / "labeled_heldout.jsonl.gz"
DEFAULT_EVAL, TRIALS = ROOT / "docs" / "default_eval", ROOT / "docs" / "trials"
# (judge, rows, predictions, data, offset, limit): predictions of exactly those rows of the data.
# `default` is the shipped judge (the hh_from_stage1 trial's adapter); `labeled-only default` the one it
# replaced (720 steps on labeled pairs alone), whose evaluations are kept in docs/default_eval/labeled_only_720_steps.
PREVIOUS = DEFAULT_EVAL / "labeled_only_720_steps"
SOURCES = []
for judge, evals, hh_select in (("default", DEFAULT_EVAL, TRIALS / "hh_from_stage1" / "adapted_hh_select.predictions.jsonl"),
                                ("labeled-only default", PREVIOUS, TRIALS / "hh_adapt_from_default" / "default_hh_select.predictions.jsonl")):
    SOURCES += [
        (judge, "in-domain rows 0–499 (raw)", evals / "labeled_heldout_raw.predictions.jsonl", HELDOUT, 0, 500),
        (judge, "in-domain selection rows 500–799", evals / "labeled_heldout_raw.predictions.jsonl", HELDOUT, 500, 300),
        (judge, "hh-harmless held-out (calibrated, as reported)", evals / "hh_heldout.predictions.jsonl", SPLITS / "hh_heldout.jsonl.gz", 0, None),
        (judge, "hh selection split", hh_select, HH_SELECT, 0, None),
    ]
# The trials that did not ship (each from its recorded predictions, docs/trials/<trial>/).
SOURCES += [(name, label, TRIALS / folder / f"adapted_{rows}.predictions.jsonl", *ROWS[rows])
            for name, folder in (("hh_adapt", "hh_adapt_from_default"), ("hh_adapt_gentle", "hh_adapt_gentle"),
                                 ("balanced_from_stage1", "balanced_from_stage1"))
            for rows, label in (("selection", "in-domain selection rows 500–799"), ("hh_select", "hh selection split"))]
# The ablation's variants at 480 pairs (scripts/ablation.py), on its in-domain and hh-harmless rows.
ABLATION = ROOT / "docs" / "ablation" / "eval"
SOURCES += [(f"ablation {v}", rows, ABLATION / v / name / "predictions.jsonl", data, 0, limit)
            for name, rows, data, limit in (("labeled_heldout", "in-domain rows 0–299", HELDOUT, 300),
                                            ("hh_heldout", "hh-harmless held-out, first 100", SPLITS / "hh_heldout.jsonl.gz", 100))
            for v in ("finetune_only", "gram", "bt_baseline")]


START, END = "<!-- length-split:start -->", "<!-- length-split:end -->"


def split_of(predictions: Path, data: Path, offset: int, limit: int | None, tokenizer) -> dict:
    from gram_ray.encoding import longer_visible
    from gram_ray.eval.metrics import PairPrediction, length_split, pairs_metrics
    from gram_ray.eval.run import EvalConfig, load_comparisons

    _, jobs = load_comparisons(EvalConfig(data=data, out=ROOT / "runs", offset=offset, limit=limit))
    preds = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
    if predictions.name == "labeled_heldout_raw.predictions.jsonl":  # rows 0-799 in one file
        preds = preds[offset:offset + limit]
    if [p["line"] for p in preds] != [j["line"] for j in jobs]:
        raise SystemExit(f"{predictions}: its rows are not rows {offset}… of {data}")
    longer = longer_visible(tokenizer, [j["a"] for j in jobs], [j["b"] for j in jobs], BUDGET)
    labels, p = [x["label"] for x in preds], [x["p_a_better"] for x in preds]
    overall = pairs_metrics([PairPrediction(x["label"], x["p_a_better"], x["p_ab"], x["p_ba"]) for x in preds])
    return {"n": overall["n"], "accuracy": overall["accuracy"], **length_split(labels, p, longer)}


def table(results: list[dict]) -> str:
    def acc(part: dict) -> str:
        low, high = part["accuracy_ci95"]
        return f"{part['accuracy']:.3f} ({low:.2f}–{high:.2f}), n={part['n']}"

    lines = ["| judge | rows | n | accuracy | longer response better | shorter response better | verdict = longer |",
             "|---|---|---:|---:|---|---|---:|"]
    for r in results:
        lines.append(f"| `{r['judge']}` | {r['rows']} | {r['n']} | {r['accuracy']:.3f} | {acc(r['longer_wins'])} | "
                     f"{acc(r['shorter_wins'])} | {r['agrees_with_longer']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from gram_ray.models import load_tokenizer, resolve_model

    make_splits()
    make_hh_select()
    tokenizer = load_tokenizer(resolve_model("gram_ray/models/default"))
    results = []
    for judge, rows, predictions, data, offset, limit in SOURCES:
        if predictions.is_file():
            results.append({"judge": judge, "rows": rows, **split_of(predictions, data, offset, limit, tokenizer)})
    text = table(results)
    print(text)
    write_table_into(ROOT / "MODEL_CARD.md", text, START, END)


if __name__ == "__main__":
    main()
