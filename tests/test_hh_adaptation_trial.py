"""scripts/hh_adaptation_trial.py: the mixes it builds, the commands it runs and the bar it applies (no model)."""

import dataclasses
import gzip
import json

import pytest

from scripts import hh_adaptation_trial as trial


def write_rows(path, rows):
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def read_rows(path):
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def splits(tmp_path, monkeypatch):
    splits = tmp_path / "runs" / "data"
    splits.mkdir(parents=True)
    hh = [{"prompt": f"hh question {i}", "chosen": "I can't help with that.", "rejected": f"Sure, step {i}"} for i in range(40)]
    # One labeled row in four has its shorter response better (train_labeled: 15%).
    labeled = [{"prompt": f"q{i}", "response_a": "a longer answer", "response_b": "short", "label": "B" if i % 4 == 0 else "A"}
               for i in range(400)]
    write_rows(splits / "hh_train.jsonl.gz", hh)
    write_rows(splits / "labeled_train.jsonl.gz", labeled)
    monkeypatch.setattr(trial, "ROOT", tmp_path)
    monkeypatch.setattr(trial, "SPLITS", splits)
    monkeypatch.setattr(trial, "HH_TRAIN", splits / "hh_adapt_train.jsonl.gz")
    monkeypatch.setattr(trial, "HH_SELECT", splits / "hh_adapt_select.jsonl.gz")
    monkeypatch.setattr(trial, "make_splits", lambda: None)
    return splits


@pytest.mark.parametrize(("name", "hh_copies", "labeled_per_hh"), [("hh_adapt", 1, 0.5), ("hh_adapt_gentle", 1, 2.0),
                                                                   ("hh_from_stage1", 2, 4.0), ("balanced_from_stage1", 2, 4.0)])
def test_mix_holds_each_trials_share_of_hh_rows(splits, name, hh_copies, labeled_per_hh):
    trial.make_data(name)
    adapt, select = read_rows(trial.HH_TRAIN), read_rows(trial.HH_SELECT)
    assert adapt and select and not {r["prompt"] for r in adapt} & {r["prompt"] for r in select}
    mix = read_rows(trial.mix_path(name))
    hh = [r for r in mix if "chosen" in r]
    assert len(hh) == hh_copies * len(adapt)
    assert len(mix) - len(hh) == int(len(hh) * labeled_per_hh)
    assert not {r["prompt"] for r in hh} & {r["prompt"] for r in select}  # the selection rows are never trained on
    trial.make_data(name)  # a second call keeps the mix it made
    assert read_rows(trial.mix_path(name)) == mix


@pytest.mark.parametrize("gpu", [False, True])
def test_local_trains_without_ray_and_scores_in_process(splits, monkeypatch, gpu):
    monkeypatch.setattr(trial, "cuda", lambda: gpu)
    monkeypatch.setattr("scripts.ablation.cuda", lambda: gpu)
    sets = trial.train_overrides("hh_from_stage1", local=True)
    assert f"model={trial.STAGE1}" in sets and "max_steps=720" in sets and "lr=0.001" in sets
    assert "launcher=local" in sets and f"use_gpu={str(gpu).lower()}" in sets
    assert f"checkpoint_every={100 if gpu else 10}" in sets
    # a whole run from stage 1 records the default's held-out curve; an adaptation of the default does not
    assert f"eval_every={250 if gpu else 100}" in sets and "eval_limit=120" in sets
    assert f"eval_data={trial.SPLITS / 'labeled_heldout.jsonl.gz'}" in sets
    assert not any(s.startswith("eval_") for s in trial.train_overrides("hh_adapt_gentle", local=True))
    under_ray = trial.train_overrides("hh_adapt_gentle")
    assert f"model={trial.DEFAULT}" in under_ray and "launcher=local" not in under_ray and "lr=0.0002" in under_ray

    commands = []

    def fake_run(cmd):  # `gram-ray eval`, writing the metrics the trial then reads
        commands.append(cmd)
        out = trial.Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True)
        metrics = {"pairs": {"n": 10, "accuracy": 0.9, "accuracy_ci95": [0.6, 1.0], "flip_rate": 0.1, "ece": 0.05},
                   "length_baseline": {"pairs": {"accuracy": 0.5}}}
        (out / "metrics.json").write_text(json.dumps(metrics))

    monkeypatch.setattr(trial, "run", fake_run)
    trial.decide("hh_from_stage1", local=True)
    assert len(commands) == 3  # adapted on both row sets, the default on the hh selection split
    flags = ["--num-actors", "0", *(["--dtype", "float32"] if gpu else [])]
    assert all(cmd[-len(flags):] == flags for cmd in commands)


def metrics(accuracy, flip, length=0.5):
    return {"pairs": {"n": 100, "accuracy": accuracy, "accuracy_ci95": [0, 1], "flip_rate": flip, "ece": 0.05},
            "length_baseline": {"pairs": {"accuracy": length}}}


@pytest.mark.parametrize(("selection", "hh", "length", "ship"), [
    ((0.84, 0.10), 0.60, 0.50, True),
    ((0.82, 0.10), 0.60, 0.50, False),  # in-domain accuracy under 0.83
    ((0.84, 0.13), 0.60, 0.50, False),  # flips over 0.12
    ((0.84, 0.10), 0.60, 0.56, False),  # hh under length + 0.05
    ((0.84, 0.10), 0.52, 0.40, False),  # hh under the default (0.50) + 0.03
])
def test_decision_applies_every_check_of_the_bar(splits, monkeypatch, selection, hh, length, ship):
    results = {("adapted", "selection"): metrics(*selection), ("adapted", "hh_select"): metrics(hh, 0.3, length),
               ("default", "hh_select"): metrics(0.50, 0.4)}
    monkeypatch.setattr(trial, "evaluate", lambda trial_dir, name, model, rows, local=False: results[name, rows])
    decision = trial.decide("hh_adapt_gentle")
    assert decision["ship"] is ship
    assert json.loads((trial.run_dir("hh_adapt_gentle") / "decision.json").read_text()) == decision


def test_balanced_mix_holds_a_third_of_rows_whose_shorter_response_wins(splits):
    trial.make_data("balanced_from_stage1")
    labeled = [r for r in read_rows(trial.mix_path("balanced_from_stage1")) if "label" in r]
    shorter = [r for r in labeled if trial.shorter_wins(r)]
    assert len(labeled) == 4 * 2 * len(read_rows(trial.HH_TRAIN)) and len(shorter) == round(len(labeled) / 3)
    assert len({r["prompt"] for r in labeled}) == len(labeled)  # no row twice
    trial.make_data("hh_from_stage1")  # the unbalanced mix keeps the split's share (one in four here)
    unbalanced = [r for r in read_rows(trial.mix_path("hh_from_stage1")) if "label" in r]
    assert sum(map(trial.shorter_wins, unbalanced)) == len(unbalanced) // 4


def test_a_balanced_mix_needs_enough_rows_whose_shorter_response_wins(splits, monkeypatch):
    monkeypatch.setitem(trial.TRIALS, "balanced_from_stage1",
                        dataclasses.replace(trial.TRIALS["balanced_from_stage1"], shorter_wins_share=0.9))
    with pytest.raises(SystemExit, match="shorter"):
        trial.make_data("balanced_from_stage1")


@pytest.mark.parametrize(("row", "expected"), [
    ({"response_a": "short", "response_b": "much longer", "label": "A"}, True),
    ({"response_a": "short", "response_b": "much longer", "label": "B"}, False),
    ({"response_a": "much longer", "response_b": "short", "label": "B"}, True),
    ({"response_a": "same", "response_b": "size", "label": "A"}, False),
])
def test_shorter_wins(row, expected):
    assert trial.shorter_wins(row) is expected


def test_record_copies_a_decided_trial_into_docs(tmp_path, monkeypatch):
    monkeypatch.setattr(trial, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match="no decision"):
        trial.record("hh_from_stage1")
    run = tmp_path / "runs" / "hh_from_stage1"
    for rows in ("selection", "hh_select"):
        (run / "eval" / "adapted" / rows).mkdir(parents=True)
        (run / "eval" / "adapted" / rows / "metrics.json").write_text(f'{{"rows": "{rows}"}}')
        (run / "eval" / "adapted" / rows / "predictions.jsonl").write_text(f'{{"line": 1, "rows": "{rows}"}}\n')
    (run / "decision.json").write_text('{"ship": false}')
    (run / "metrics.json").write_text('{"steps": 720}')
    (run / "final").mkdir()
    (run / "final" / "adapter_model.safetensors").write_bytes(b"weights")
    out = trial.record("hh_from_stage1")
    assert sorted(p.name for p in out.iterdir()) == [
        "adapted_hh_select.json", "adapted_hh_select.predictions.jsonl", "adapted_selection.json",
        "adapted_selection.predictions.jsonl", "decision.json", "train_metrics.json"]
    assert json.loads((out / "adapted_hh_select.json").read_text()) == {"rows": "hh_select"}
    assert json.loads((out / "train_metrics.json").read_text()) == {"steps": 720}
