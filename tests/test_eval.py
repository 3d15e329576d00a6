"""`gram-ray eval` on slices of the development benchmarks (tiny model, Ray Data actor pool)."""

import gzip
import json
from pathlib import Path

import pytest

from gram_ray.data import DataError
from gram_ray.eval.run import EvalConfig, evaluate, load_comparisons
from gram_ray.judge import Pair
from gram_ray.scorer import GramScorer, ScorerConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def cfg(tmp_path, data, model, **kw):
    scorer = ScorerConfig(model=str(model), dtype="float32", max_response_tokens=24, max_prompt_tokens=48)
    return EvalConfig(data=data, out=tmp_path / "eval", scorer=scorer, num_actors=2, batch_size=4, **kw)


def test_rmbench_slice(ray_cluster, tmp_path, tiny_model_dir):
    if not DATA.is_dir():
        pytest.skip("shared data not present")
    metrics = evaluate(cfg(tmp_path, DATA / "dev_rmbench_safety_refuse.jsonl.gz", tiny_model_dir, limit=2))
    assert metrics["format"] == "rmbench" and metrics["comparisons"] == 18
    assert set(metrics["rmbench"]["domains"]) == {"safety"}
    out = tmp_path / "eval"
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 18
    for name in ("metrics.json", "report.md", "accuracy.png", "reliability.png", "flip_rate.png"):
        assert (out / name).is_file(), name
    assert "RM-Bench overall" in (out / "report.md").read_text()


def test_judgebench_slice_matches_the_offline_scorer(ray_cluster, tmp_path, tiny_model_dir):
    if not DATA.is_dir():
        pytest.skip("shared data not present")
    config = cfg(tmp_path, DATA / "dev_judgebench_claude.jsonl.gz", tiny_model_dir, limit=3)
    metrics = evaluate(config)
    assert metrics["format"] == "judgebench" and metrics["judgebench"]["n"] == 3
    predictions = [json.loads(x) for x in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    _, jobs = load_comparisons(config)
    offline = GramScorer.from_config(config.scorer).score([Pair(j["prompt"], j["a"], j["b"]) for j in jobs])
    for p, o in zip(predictions, offline, strict=True):
        assert p["p_ab"] == pytest.approx(o.p_ab, abs=1e-5) and p["p_ba"] == pytest.approx(o.p_ba, abs=1e-5)


def test_pairs_and_rewardbench_fixtures(ray_cluster, tmp_path, tiny_model_dir):
    rows = [
        {"prompt": "q1", "chosen": "good", "rejected": "bad", "subset": "alpacaeval-easy"},
        {"prompt": "q2", "chosen": "fine", "rejected": "worse", "subset": "math-prm"},
        {"prompt": "q3", "chosen": "yes", "rejected": "no", "subset": "hep-python"},
    ]
    path = tmp_path / "rb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = evaluate(cfg(tmp_path, path, tiny_model_dir))
    assert metrics["format"] == "rewardbench" and set(metrics["rewardbench"]["sections"]) == {"Chat", "Reasoning"}
    # The length baseline on the same rows: "good" > "bad" and "yes" > "no" by length, "fine" < "worse".
    baseline = metrics["length_baseline"]
    assert baseline["pairs"]["accuracy"] == pytest.approx(2 / 3) and baseline["max_response_tokens"] == 24
    assert baseline["pairs"]["flip_rate"] == 0 and "rewardbench" in baseline
    # The model's accuracy apart where the longer response is better (q1, q3) and where the shorter is (q2).
    split = metrics["length_split"]
    assert (split["longer_wins"]["n"], split["shorter_wins"]["n"]) == (2, 1)
    predicted = [json.loads(x) for x in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    right = [(p["p_a_better"] > 0.5) == (p["label"] == "A") for p in predicted]
    assert split["longer_wins"]["accuracy"] == pytest.approx((right[0] + right[2]) / 2)
    assert split["shorter_wins"]["accuracy"] == float(right[1])
    assert "where the shorter is" in (tmp_path / "eval" / "report.md").read_text()

    if DATA.is_dir():
        with gzip.open(DATA / "train_labeled.jsonl.gz", "rt") as f:
            lines = [next(f) for _ in range(4)]
        pairs = tmp_path / "pairs.jsonl"
        pairs.write_text("".join(lines))
        metrics = evaluate(cfg(tmp_path, pairs, tiny_model_dir))
        assert metrics["format"] == "pairs" and metrics["pairs"]["n"] == 4
        assert 0 <= metrics["pairs"]["flip_rate"] <= 1 and metrics["pairs"]["ece"] >= 0
        raw = [json.loads(x) for x in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]

        # --offset skips rows, and a model's calibration.json is applied and recorded with the metrics
        # (so `gram-ray calibrate --predictions` can undo it).
        import shutil

        from gram_ray.judge import Calibration
        from gram_ray.judge import log_odds as logit

        calibrated = tmp_path / "calibrated"
        shutil.copytree(tiny_model_dir, calibrated)
        cal = Calibration(position_bias=0.4, temperature=2.0)
        (calibrated / "calibration.json").write_text(json.dumps(cal.as_dict()))
        metrics = evaluate(cfg(tmp_path, pairs, calibrated, offset=1, limit=2))
        assert metrics["pairs"]["n"] == 2 and metrics["calibration"] == cal.as_dict()
        shifted = [json.loads(x) for x in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
        assert [r["line"] for r in shifted] == [2, 3]
        for before, after in zip(raw[1:3], shifted, strict=True):
            assert after["p_ab"] == pytest.approx(cal.p_first_better(logit(before["p_ab"])), abs=1e-5)


def test_reasoning_eval_reports_votes_rationales_and_throughput(ray_cluster, tmp_path, tiny_model_dir):
    rows = [{"prompt": f"q{i}", "chosen": "good answer", "rejected": "bad"} for i in range(3)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = evaluate(cfg(tmp_path, path, tiny_model_dir, reasoning=True, votes=2, sampling={"max_new_tokens": 5, "seed": 0}))
    reasoning = metrics["reasoning"]
    assert reasoning["votes"] == 2 and reasoning["samples"] == 3 * 2 * 2  # 2 votes in each order
    assert 0 <= reasoning["unparsed"] <= reasoning["samples"] and reasoning["generated_tokens"] > 0
    assert reasoning["tokens_per_s_per_actor"] > 0
    predictions = [json.loads(x) for x in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert all(len(p["rationales"]) == 4 for p in predictions)
    assert "## reasoning" in (tmp_path / "eval" / "report.md").read_text()


def test_bad_benchmark_rows_name_the_line(tmp_path, tiny_model_dir):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "q", "chosen": ["a", "b", "c"], "rejected": ["x", "y"]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: rejected: expected a list of 3"):
        load_comparisons(cfg(tmp_path, path, tiny_model_dir))
    path.write_text(json.dumps({"prompt": "q", "response_a": "a", "response_b": "b"}) + "\n")
    with pytest.raises(DataError, match="label: missing"):
        load_comparisons(cfg(tmp_path, path, tiny_model_dir))
