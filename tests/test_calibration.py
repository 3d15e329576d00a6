"""Calibration (position bias and temperature): the rule, the fit against hand-worked values, and
that a model's calibration.json reaches the scorer and the eval pipeline."""

import json
import math
import shutil

import pytest

from gram_ray.eval.calibrate import (
    CalibrateConfig,
    calibrate,
    first_position_observations,
    fit_calibration,
    recalibrated,
)
from gram_ray.judge import Calibration, Pair
from gram_ray.judge import log_odds as logit
from gram_ray.scorer import GramScorer, ScorerConfig


def test_the_rule_by_hand():
    assert Calibration().p_first_better(0.0) == 0.5
    assert Calibration().p_first_better(math.log(3)) == pytest.approx(0.75)  # softmax of (ln 3, 0)
    # (3 - 1) / 2 = 1 → σ(1)
    assert Calibration(position_bias=1.0, temperature=2.0).p_first_better(3.0) == pytest.approx(0.7310585786300049)
    assert Calibration(position_bias=0.0, temperature=1.0).p_first_better(-800.0) == 0.0  # no overflow
    with pytest.raises(ValueError, match="temperature > 0"):
        Calibration(temperature=0.0)


def test_fit_matches_hand_worked_maximum_likelihood():
    # Two margin values, so the logistic fit reproduces each group's frequency exactly:
    # σ(w + c) = q(+1), σ(-w + c) = q(-1)  →  w = (logit q+ - logit q-)/2, c = (logit q+ + logit q-)/2.
    # q+ = 3/4, q- = 1/4: w = ln 3, c = 0 → temperature 1/ln 3, no position bias.
    fit = fit_calibration([1, 1, 1, 1, -1, -1, -1, -1], [True, True, True, False, True, False, False, False], ridge=0.0)
    assert fit.temperature == pytest.approx(1 / math.log(3), rel=1e-8)
    assert fit.position_bias == pytest.approx(0.0, abs=1e-9)
    # q+ = 3/4, q- = 1/2: w = c = ln 3 / 2 → temperature 2/ln 3, position bias -c/w = -1.
    fit = fit_calibration([1, 1, 1, 1, -1, -1], [True, True, True, False, True, False], ridge=0.0)
    assert fit.temperature == pytest.approx(2 / math.log(3), rel=1e-8)
    assert fit.position_bias == pytest.approx(-1.0, rel=1e-8)
    # The default tiny ridge towards the identity moves these 6 outcomes' fit by under 0.1%.
    assert fit_calibration([1, 1, 1, 1, -1, -1], [True, True, True, False, True, False]).position_bias == pytest.approx(-1.0, rel=1e-3)


def test_fit_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="always"):
        fit_calibration([1.0, 2.0], [True, True])
    with pytest.raises(ValueError, match="not positively related"):
        fit_calibration([1, 1, 1, 1, -1, -1, -1, -1], [False, False, False, True, False, True, True, True])


def test_observations_and_recalibration_use_both_orders():
    # response_a shown first with p 0.8; shown second, p_ba = 0.6 means P(first = response_b better) = 0.4.
    rows = [{"label": "A", "p_ab": 0.8, "p_ba": 0.6, "p_a_better": 0.7}]
    margins, first_better = first_position_observations(rows)
    assert margins == pytest.approx([logit(0.8), logit(0.4)]) and first_better == [True, False]
    # A position bias equal to the mean margin makes the two orders agree that the pair is a tie.
    bias = Calibration(position_bias=0.5 * (logit(0.8) + logit(0.4)))
    (row,) = recalibrated(rows, bias)
    assert row["p_ab"] == pytest.approx(row["p_ba"]) and row["p_a_better"] == pytest.approx(row["p_ab"])
    # Predictions made with a calibration are undone back to raw margins first.
    made_with = Calibration(position_bias=0.3, temperature=1.7)
    scored = recalibrated(rows, made_with)
    assert recalibrated(scored, Calibration(), applied=made_with)[0]["p_ab"] == pytest.approx(0.8)
    assert first_position_observations(scored, applied=made_with)[0] == pytest.approx(margins)


def test_a_models_calibration_reaches_the_scorer(tiny_model_dir, tmp_path):
    """calibration.json beside a model changes every scorer's per-order probabilities exactly as the rule
    says; `calibrated=False` (or a model without one) gives the raw verdict probabilities."""
    model = tmp_path / "calibrated"
    shutil.copytree(tiny_model_dir, model)
    cal = Calibration(position_bias=0.7, temperature=0.5)
    (model / "calibration.json").write_text(json.dumps(cal.as_dict()))
    pairs = [Pair("Which is bigger, 2 or 3?", "3", "2"), Pair("Say hi.", "hi there", "no")]
    calibrated = GramScorer.from_config(ScorerConfig(model=str(model), dtype="float32"))
    raw = GramScorer.from_config(ScorerConfig(model=str(model), dtype="float32", calibrated=False))
    assert calibrated.info()["calibration"] == cal.as_dict() and raw.info()["calibration"] == Calibration().as_dict()
    for c, r in zip(calibrated.score(pairs), raw.score(pairs), strict=True):
        assert c.p_ab == pytest.approx(cal.p_first_better(logit(r.p_ab)), abs=1e-5)
        assert c.p_ba == pytest.approx(1 - cal.p_first_better(logit(1 - r.p_ba)), abs=1e-5)
        assert c.p_a_better == pytest.approx(0.5 * (c.p_ab + c.p_ba))
    (model / "calibration.json").write_text("{\"temperature\": -1, \"position_bias\": 0}")
    with pytest.raises(ValueError, match="calibration.json"):
        GramScorer.from_config(ScorerConfig(model=str(model), dtype="float32"))


def test_calibrate_from_predictions_writes_the_record(tmp_path, tiny_model_dir):
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    rows = [{"label": "A", "p_ab": 0.9, "p_ba": 0.2, "p_a_better": 0.55}, {"label": "B", "p_ab": 0.7, "p_ba": 0.1, "p_a_better": 0.4},
            {"label": "A", "p_ab": 0.95, "p_ba": 0.6, "p_a_better": 0.775}, {"label": "B", "p_ab": 0.3, "p_ba": 0.05, "p_a_better": 0.175},
            {"label": "A", "p_ab": 0.99, "p_ba": 0.99, "p_a_better": 0.99}]
    predictions = tmp_path / "eval" / "predictions.jsonl"
    predictions.parent.mkdir()
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    record = calibrate(CalibrateConfig(model=model, predictions=predictions, offset=0, limit=4))
    saved = json.loads((model / "calibration.json").read_text())
    assert saved == json.loads(json.dumps(record)) and saved["fitted_on"]["pairs"] == 4
    # These predictions favour the first position (p_ab high, p_ba low): the fit says so (finite, though
    # these few outcomes are separable), and removing it makes the orders agree more often.
    assert saved["position_bias"] > 0
    assert saved["after"]["flip_rate"] <= saved["before"]["flip_rate"]
    with pytest.raises(ValueError, match="exactly one"):
        CalibrateConfig(model=model)
