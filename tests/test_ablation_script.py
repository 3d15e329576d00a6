"""scripts/ablation.py's paired comparison, on hand-made prediction files (no model)."""

import json

import pytest

from scripts import ablation


def write(root, variant, benchmark, labels, p_a_better):
    out = root / "eval" / variant / benchmark
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
