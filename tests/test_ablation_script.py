"""scripts/ablation.py's paired comparison, on hand-made prediction files (no model)."""

import json

import pytest

from scripts import ablation


def write(root, variant, benchmark, labels, p_a_better, kind="eval"):
    out = root / kind / variant / benchmark
    out.mkdir(parents=True)
    rows = [{"id": f"r{i}", "label": lab, "p_a_better": p} for i, (lab, p) in enumerate(zip(labels, p_a_better, strict=True))]
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "metrics.json").write_text("{}")


def test_paired_differences_reads_both_judges_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(ablation, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(ablation, "ARCHIVE", tmp_path / "archive")
    labels = ["A", "B", "A", "B"]
    # gram right on rows 0-2 (0.5 exactly is a tie, never right), finetune_only on row 0 only: +0.5.
    write(tmp_path / "runs", "gram", "labeled_heldout", labels, [0.9, 0.2, 0.7, 0.8])
    write(tmp_path / "archive", "finetune_only", "labeled_heldout", labels, [0.6, 0.5, 0.4, 0.9])
    text = ablation.paired_differences()
    assert "| labeled_heldout | gram − finetune_only | +0.500 |" in text and "| 4 |" in text
    assert "bt_baseline" not in text  # not judged: no row rather than a made-up one


def test_paired_differences_empty_without_results(tmp_path, monkeypatch):
    monkeypatch.setattr(ablation, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(ablation, "ARCHIVE", tmp_path / "archive")
    assert ablation.paired_differences() == ""


@pytest.mark.parametrize("missing", ["start", "end"])
def test_write_table_into_needs_both_markers(tmp_path, missing):
    doc = tmp_path / "card.md"
    doc.write_text("intro\n" + ("" if missing == "start" else ablation.TABLE_START + "\n")
                   + "old\n" + ("" if missing == "end" else ablation.TABLE_END + "\n"))
    with pytest.raises(ValueError, match="markers"):
        ablation.write_table_into(doc, "new\n")


def test_write_table_into_replaces_only_between_markers(tmp_path):
    doc = tmp_path / "card.md"
    doc.write_text(f"intro\n{ablation.TABLE_START}\nold table\n{ablation.TABLE_END}\noutro\n")
    ablation.write_table_into(doc, "new table\n")
    assert doc.read_text() == f"intro\n{ablation.TABLE_START}\nnew table\n{ablation.TABLE_END}\noutro\n"


@pytest.mark.parametrize("local", [False, True])
def test_local_trains_and_scores_without_ray(tmp_path, monkeypatch, local):
    # --local: launcher=local for training and in-process fp32 scoring; without it, Ray as before.
    import gram_ray.eval.run

    monkeypatch.setattr(ablation, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(ablation, "ARCHIVE", tmp_path / "archive")
    monkeypatch.setattr(ablation, "TRAINED", tmp_path / "trained")
    monkeypatch.setattr(ablation, "cuda", lambda: False)
    commands, configs = [], []
    monkeypatch.setattr(ablation, "run", commands.append)
    monkeypatch.setattr(gram_ray.eval.run, "evaluate", configs.append)
    variant = ablation.Variant("v", "test", str(tmp_path / "none"), "train_configs/finetune.yaml", ["model=smollm2-135m"])
    ablation.train_variant(variant, local)
    ablation.evaluate_variant(variant, local)
    (cmd,) = commands
    assert ("launcher=local" in cmd and "use_gpu=false" in cmd) == local
    assert "max_steps=60" in cmd and "model=smollm2-135m" in cmd
    assert len(configs) == len(ablation.BENCHMARKS)
    assert all((c.num_actors == 0) == local and c.scorer.dtype == ("float32" if local else "auto") for c in configs)


def test_shipped_budget_bt_trains_at_the_default_budget(tmp_path, monkeypatch):
    # The variant's overrides come after BUDGET, so its 720 steps x 8 pairs win over the ablation's 60 x 8.
    from gram_ray.train.config import load_train_config
    from scripts import hh_adaptation_trial

    monkeypatch.setattr(ablation, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(ablation, "TRAINED", tmp_path / "trained")
    monkeypatch.setattr(ablation, "CARRIED", tmp_path / "carried")
    monkeypatch.setattr(ablation, "ROOT", tmp_path)
    commands, mixes = [], []
    monkeypatch.setattr(ablation, "run", commands.append)
    monkeypatch.setattr(hh_adaptation_trial, "make_data", mixes.append)  # no data files here: only which mix
    by_name = {v.name: v for v in ablation.VARIANTS}
    ablation.train_variant(by_name["bt_shipped_budget"])
    (cmd,) = commands
    sets = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--set"]
    config = load_train_config(cmd[cmd.index("train") + 1], sets)
    assert (config.max_steps, config.batch_size, config.grad_accum) == (720, 8, 1)
    # the shipped default's own pairs (its hh-harmless mix), not labeled_train
    assert mixes == ["hh_from_stage1"] and [str(d) for d in config.data] == [str(hh_adaptation_trial.mix_path("hh_from_stage1"))]
    assert "shipped_default" not in ablation.RUN_ORDER and "bt_shipped_budget" not in ablation.RUN_ORDER


def test_variants_never_evaluated_get_no_row(tmp_path, monkeypatch):
    monkeypatch.setattr(ablation, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(ablation, "ARCHIVE", tmp_path / "archive")
    write(tmp_path / "archive", "gram", "labeled_heldout", ["A", "B"], [0.9, 0.2])
    metrics = {"headline": {"value": 1.0}, "comparisons": 2, "pairs": {"accuracy": 1.0, "flip_rate": 0.0},
               "length_baseline": {"headline": {"value": 0.5}, "pairs": {"accuracy": 0.5}}}
    (tmp_path / "archive" / "eval" / "gram" / "labeled_heldout" / "metrics.json").write_text(json.dumps(metrics))
    results = ablation.collect()
    assert set(results) == {"gram", "longer_response"}
    assert "shipped_default" not in ablation.table(results)


def write_checkpoint(directory, step):
    directory.mkdir(parents=True)
    (directory / "position.json").write_text(json.dumps({"step": step}))
    (directory / "trainer_state.pt").write_bytes(b"state")
    return directory


@pytest.fixture
def variant_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(ablation, "ROOT", tmp_path)
    monkeypatch.setattr(ablation, "RUNS", tmp_path / "runs" / "ablation")
    monkeypatch.setattr(ablation, "CARRIED", tmp_path / "checkpoints" / "ablation_runs")
    monkeypatch.setattr(ablation, "TRAINED", tmp_path / "checkpoints" / "ablation")
    commands = []
    monkeypatch.setattr(ablation, "run", commands.append)
    return commands


def test_long_variant_continues_from_the_committed_checkpoint_and_its_time(variant_dirs, tmp_path, monkeypatch):
    """A fresh clone holds only checkpoints/ablation_runs/<variant>: training resumes there, and the
    variant's training time carries on from the seconds spent before."""
    v = ablation.Variant("bt_long", "BT", "runs/ablation/bt_long/final", "train_configs/bt_baseline.yaml", ["max_steps=720"])
    kept = write_checkpoint(tmp_path / "checkpoints" / "ablation_runs" / "bt_long", 90)
    (kept / "wall_seconds.txt").write_text("3000\n")
    monkeypatch.setattr(ablation.time, "time", iter([100.0, 160.0]).__next__)
    ablation.train_variant(v)
    (cmd,) = variant_dirs
    sets = [cmd[i + 1] for i, x in enumerate(cmd) if x == "--set"]
    assert sets[-1] == f"resume_from={kept}"  # after the budget's resume_from=latest, so it wins
    assert "max_steps=720" in sets and "data=[" in sets[0]
    assert (tmp_path / "runs" / "ablation" / "bt_long" / "wall_seconds.txt").read_text() == "3060\n"

    # This machine's newer checkpoint, and its time, go back into the committed copy.
    write_checkpoint(tmp_path / "runs" / "ablation" / "bt_long" / "ray" / "run" / "checkpoint_000004", 120)
    ablation.carried(v).snapshot()
    assert json.loads((kept / "position.json").read_text())["step"] == 120
    assert (kept / "wall_seconds.txt").read_text() == "3060\n"


def test_variant_from_scratch_resumes_only_its_own_run(variant_dirs):
    v = ablation.Variant("bt_new", "BT", "runs/ablation/bt_new/final", "train_configs/bt_baseline.yaml")
    ablation.train_variant(v)
    (cmd,) = variant_dirs
    assert not any(x.startswith("resume_from=/") for x in cmd) and "resume_from=latest" in cmd


def test_whole_sets_have_their_own_rows_limits_and_table(tmp_path, monkeypatch):
    # --whole: each set whole (in domain the report rows 0-499) into eval_whole/, never mixed with the
    # ablation's rows; its paired differences cover every set judged, RM-Bench and JudgeBench too.
    import gram_ray.eval.run

    monkeypatch.setattr(ablation, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(ablation, "ARCHIVE", tmp_path / "archive")
    monkeypatch.setattr(ablation, "TRAINED", tmp_path / "trained")
    monkeypatch.setattr(ablation, "cuda", lambda: False)
    configs = []
    monkeypatch.setattr(gram_ray.eval.run, "evaluate", configs.append)
    variant = ablation.Variant("v", "test", str(tmp_path / "none"))
    ablation.evaluate_variant(variant, local=True, whole=True)
    assert {c.data.name: c.limit for c in configs} == {
        "labeled_heldout.jsonl.gz": 500, "hh_heldout.jsonl.gz": None, "dev_rmbench_code.jsonl.gz": None,
        "dev_rmbench_safety_refuse.jsonl.gz": None, "dev_judgebench_claude.jsonl.gz": None}
    assert all(c.out.parent.parent.name == "eval_whole" for c in configs)

    labels, archive = ["A", "B", "A", "B"], tmp_path / "archive"
    write(archive, "shipped_default", "labeled_heldout", labels, [0.9, 0.2, 0.7, 0.8])  # the ablation's rows only
    for v, p in (("shipped_default", [0.9, 0.2, 0.7, 0.8]), ("bt_shipped_budget", [0.9, 0.2, 0.7, 0.1])):
        write(archive, v, "judgebench", labels, p, kind="eval_whole")
    text = ablation.paired_differences(whole=True)
    assert "| judgebench | shipped_default − bt_shipped_budget | -0.250 |" in text and "| 4 |" in text
    assert "labeled_heldout" not in text  # judged on the ablation's rows only, not whole
    assert "judgebench" not in ablation.paired_differences()  # the ablation's rows: plain-pair sets only
