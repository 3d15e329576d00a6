"""scripts/train_default.py --decide: a rerun of the default's recipe is judged by the bar the shipped
adapter passed, on the same rows, beside it (no model: the evaluations are fixtures)."""

import json

import pytest

from scripts import hh_adaptation_trial as trial


def test_bar_checks_by_hand():
    at_bar = {"accuracy": 0.83, "flip_rate": 0.12}
    assert all(trial.bar_checks(at_bar, hh_accuracy=0.61, hh_length=0.55, hh_default=0.57).values())
    checks = trial.bar_checks({"accuracy": 0.829, "flip_rate": 0.121}, hh_accuracy=0.60, hh_length=0.56, hh_default=0.58)
    assert checks == {"selection_accuracy_min": False, "selection_flip_max": False,
                      "hh_select_over_length_baseline_min": False, "hh_select_over_default_min": False}


def predictions(labels, right):
    """One predictions.jsonl row per label, judged right where `right` says so."""
    rows = []
    for line, (label, ok) in enumerate(zip(labels, right, strict=True)):
        p = 0.9 if (label == "A") == ok else 0.1
        rows.append({"id": f"r{line}", "line": line + 1, "i": 0, "j": 0, "label": label, "p_a_better": p})
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture
def decided(tmp_path, monkeypatch):
    from scripts import train_default

    labels = ["A", "B"] * 5
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "decision.json").write_text(json.dumps({
        "selection": {"n": 10, "accuracy": 0.8}, "hh_select": {"adapted": 0.6, "default": 0.5}}))
    (shipped / "adapted_selection.predictions.jsonl").write_text(predictions(labels, [True] * 8 + [False] * 2))
    (shipped / "adapted_hh_select.predictions.jsonl").write_text(predictions(labels, [True] * 6 + [False] * 4))
    # the rerun: 9 of 10 selection rows right (one more than the shipped run), 7 of 10 hh rows
    mine = {"selection": [True] * 9 + [False], "hh_select": [True] * 7 + [False] * 3}
    judged = []

    def evaluate(trial_dir, name, model, rows, local=False):
        judged.append((name, model, rows))
        out = trial_dir / "eval" / name / rows
        out.mkdir(parents=True, exist_ok=True)
        (out / "predictions.jsonl").write_text(predictions(labels, mine[rows]))
        accuracy = sum(mine[rows]) / 10
        return {"pairs": {"n": 10, "accuracy": accuracy, "accuracy_ci95": [0, 1], "flip_rate": 0.1, "ece": 0.05},
                "length_baseline": {"pairs": {"accuracy": 0.5}}}

    monkeypatch.setattr(train_default, "RUN", tmp_path / "runs" / "default")
    monkeypatch.setattr(train_default, "SHIPPED_RUN", shipped)
    monkeypatch.setattr(train_default, "DECISION", tmp_path / "decision")
    monkeypatch.setattr(train_default, "make_data", lambda name: None)
    monkeypatch.setattr(train_default, "export", lambda: (tmp_path / "export" / "final", 720))
    monkeypatch.setattr(trial, "evaluate", evaluate)
    return train_default.decide(), judged, tmp_path


def test_a_rerun_is_judged_on_the_shipped_rows_beside_the_shipped_run(decided):
    (decision, exported), judged, tmp_path = decided
    out = tmp_path / "decision"
    assert exported == (tmp_path / "export" / "final", 720)  # what publish() copies when it passes
    assert [(name, rows) for name, _, rows in judged] == [("reproduction_step720", "selection"), ("reproduction_step720", "hh_select")]
    # selection 0.9 / flip 0.1; hh 0.7 against length 0.5 and the replaced default's 0.5
    assert decision["ship"] and decision["step"] == 720
    assert decision["hh_select"]["replaced_default"] == 0.5
    assert decision["accuracy_minus_shipped_run"]["selection"]["difference"] == pytest.approx(0.1)
    assert decision["accuracy_minus_shipped_run"]["hh_select"]["difference"] == pytest.approx(0.1)
    assert json.loads((out / "decision.json").read_text()) == decision
    assert (out / "selection.predictions.jsonl").is_file() and (out / "hh_select.predictions.jsonl").is_file()


def steps_run(monkeypatch, argv, ship):
    """main() with each step replaced by a recorder; decide() judges an exported adapter `ship`-ly."""
    from scripts import train_default

    done = []
    for step in ("train", "snapshot", "calibrate", "report", "evaluate"):
        monkeypatch.setattr(train_default, step, lambda *a, _s=step, **k: done.append(_s))
    monkeypatch.setattr(train_default, "publish", lambda exported=None: done.append(("publish", exported)))
    monkeypatch.setattr(train_default, "export", lambda: done.append("export") or ("exported", 720))
    monkeypatch.setattr(train_default, "decide", lambda: (done.append("decide") or {"ship": ship}, ("judged", 720)))
    monkeypatch.setattr("sys.argv", ["train_default.py", *argv])
    return train_default.main, done


def test_make_model_keeps_the_shipped_adapter_when_the_rerun_fails_the_bar(monkeypatch):
    main, done = steps_run(monkeypatch, [], ship=False)
    with pytest.raises(SystemExit, match="is kept"):
        main()
    assert done == ["train", "snapshot", "decide"]


def test_make_model_publishes_the_adapter_it_judged(monkeypatch):
    main, done = steps_run(monkeypatch, [], ship=True)
    main()
    assert done == ["train", "snapshot", "decide", ("publish", ("judged", 720)), "calibrate", "report", "evaluate"]


@pytest.mark.parametrize("ship", [True, False])
def test_decide_alone_exits_nonzero_when_the_rerun_fails_the_bar(monkeypatch, ship):
    # scripts/lone_gpu_default.sh gates publishing on this exit status
    main, done = steps_run(monkeypatch, ["--decide"], ship=ship)
    if ship:
        main()
    else:
        with pytest.raises(SystemExit, match="is kept") as failed:
            main()
        assert failed.value.code not in (0, None)
    assert done == ["decide"]
