"""Calibrate a judge on held-out pairs: fit its position bias and temperature, save them beside it.

    gram-ray calibrate runs/data/labeled_heldout.jsonl.gz --model runs/step200/final \\
        --out runs/calibrate/step200 --offset 500 --limit 300
    gram-ray calibrate --predictions runs/eval/heldout/predictions.jsonl --model DIR --offset 500 --limit 300

The first form judges rows ``[offset, offset + limit)`` of a labeled file in both orders with the
raw verdict probabilities (``gram-ray eval --no-calibrated``); the second reuses an existing
evaluation's predictions. Either way it fits :class:`gram_ray.judge.Calibration` — the per-order
probability ``σ((margin - position_bias) / temperature)``, by maximum likelihood over both orders of
every pair — and writes ``calibration.json`` into the model directory, where every scorer (CLI,
evaluation, Serve) picks it up. Fit on rows you will not report: the rows an accuracy is quoted on
must stay out of the fit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gram_ray.data import DataError, atomic_writer
from gram_ray.eval import metrics as rules
from gram_ray.judge import Calibration, sigmoid
from gram_ray.models import CALIBRATION_FILE
from gram_ray.scorer import ScorerConfig

LOGIT_CLIP = 1e-7  # log-loss floor: a probability this close to 0 costs a finite loss
RAW = Calibration()  # the identity: raw verdict-token probabilities


class CalibrateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Path = Field(description="a model directory; calibration.json is written into it")
    data: Path | None = Field(None, description="labeled pairs to judge and fit on (JSONL(.gz))")
    predictions: Path | None = Field(None, description="or: an existing gram-ray eval's predictions.jsonl to fit on")
    out: Path | None = Field(None, description="with data: where the evaluation of the fit rows is written")
    offset: int = Field(0, ge=0, description="skip the first N rows (keep the rows you report out of the fit)")
    limit: int | None = Field(None, gt=0, description="then use N rows")
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    num_actors: int | None = Field(None, ge=0, description="0 = score in this process, without Ray")

    @model_validator(mode="after")
    def _one_source(self) -> CalibrateConfig:
        if (self.data is None) == (self.predictions is None):
            raise ValueError("give exactly one of data (pairs to judge) or predictions (an eval's predictions.jsonl)")
        if self.data is not None and self.out is None:
            raise ValueError("out: needed with data (the fit rows' evaluation is written there)")
        if not self.model.is_dir():
            raise ValueError(f"model: {self.model} is not a model directory (calibration.json is written into it)")
        return self


def first_position_observations(
    predictions: Sequence[dict[str, Any]], applied: Calibration = RAW,
) -> tuple[list[float], list[bool]]:
    """One (raw margin, was the response shown first better) per order of every pair.

    ``p_ab`` shows ``response_a`` first; ``p_ba`` (in "response_a is better" terms) shows
    ``response_b`` first, so its first-position probability is ``1 - p_ba``. ``applied`` is the
    calibration the predictions were made with; it is undone so the fit sees raw margins.
    """
    margins, first_better = [], []
    for row in predictions:
        if row.get("p_ba") is None:
            raise ValueError("calibration needs both orders of every pair (evaluate with --orders both)")
        for p_first, first_is_a in ((row["p_ab"], True), (1.0 - row["p_ba"], False)):
            margins.append(applied.margin(p_first))
            first_better.append((row["label"] == "A") == first_is_a)
    return margins, first_better


def _log_likelihood(w: float, c: float, margins: Sequence[float], first_better: Sequence[bool], ridge: float) -> float:
    total = 0.0
    for m, y in zip(margins, first_better, strict=True):
        z = w * m + c if y else -(w * m + c)
        total -= math.log1p(math.exp(-z)) if z >= 0 else math.log1p(math.exp(z)) - z
    return total - 0.5 * ridge * ((w - 1.0) ** 2 + c * c)


def fit_calibration(
    margins: Sequence[float], first_better: Sequence[bool], ridge: float = 1e-4, iterations: int = 200,
) -> Calibration:
    """Maximum-likelihood ``σ(w·margin + c)`` by damped Newton steps (the log-likelihood is concave in
    (w, c)); then ``temperature = 1/w`` and ``position_bias = -c/w``. A tiny ridge towards the
    identity (w = 1, c = 0) keeps the fit finite when the outcomes are perfectly separated."""
    if len(margins) != len(first_better) or not margins:
        raise ValueError("fit_calibration: need as many outcomes as margins, and at least one")
    if all(first_better) or not any(first_better):
        raise ValueError("fit_calibration: the first-shown response is always (or never) the better one; nothing to fit")
    w, c = 1.0, 0.0
    current = _log_likelihood(w, c, margins, first_better, ridge)
    for _ in range(iterations):
        g_w, g_c = -ridge * (w - 1.0), -ridge * c
        h_ww = h_cc = ridge
        h_wc = 0.0
        for m, y in zip(margins, first_better, strict=True):
            z = w * m + c
            p = sigmoid(z)
            r, v = float(y) - p, p * (1.0 - p)
            g_w, g_c = g_w + r * m, g_c + r
            h_ww, h_wc, h_cc = h_ww + v * m * m, h_wc + v * m, h_cc + v
        det = h_ww * h_cc - h_wc * h_wc
        if det <= 1e-12:
            raise ValueError("fit_calibration: the margins do not vary; nothing to fit")
        step_w, step_c = (h_cc * g_w - h_wc * g_c) / det, (h_ww * g_c - h_wc * g_w) / det
        scale = 1.0
        while scale > 1e-8:  # halve the step until the likelihood does not fall
            candidate = _log_likelihood(w + scale * step_w, c + scale * step_c, margins, first_better, ridge)
            if candidate >= current - 1e-12:
                break
            scale *= 0.5
        w, c, current = w + scale * step_w, c + scale * step_c, candidate
        if abs(scale * step_w) < 1e-10 and abs(scale * step_c) < 1e-10:
            break
    if not w > 0:
        raise ValueError(f"fit_calibration: the judge's margin is not positively related to the label (slope {w:.3g})")
    return Calibration(position_bias=-c / w, temperature=1.0 / w)


def recalibrated(predictions: Sequence[dict[str, Any]], calibration: Calibration, applied: Calibration = RAW) -> list[dict[str, Any]]:
    """The predictions as ``calibration`` would have scored them (from their raw margins)."""
    out = []
    for row in predictions:
        p_ab = calibration.p_first_better(applied.margin(row["p_ab"]))
        p_ba = 1.0 - calibration.p_first_better(applied.margin(1.0 - row["p_ba"]))
        out.append({**row, "p_ab": p_ab, "p_ba": p_ba, "p_a_better": 0.5 * (p_ab + p_ba)})
    return out


def summarize(predictions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy, flip rate, ECE and the mean log-loss of ``p_a_better`` on pairs-format predictions."""
    metrics = rules.pairs_metrics([rules.PairPrediction(r["label"], r["p_a_better"], r["p_ab"], r["p_ba"], r.get("subset") or "")
                                   for r in predictions])
    nll = -sum(math.log(min(max(r["p_a_better"] if r["label"] == "A" else 1.0 - r["p_a_better"], LOGIT_CLIP), 1.0))
               for r in predictions) / len(predictions)
    return {k: metrics[k] for k in ("n", "accuracy", "accuracy_ci95", "flip_rate", "ece")} | {"log_loss": nll}


def read_predictions(path: Path) -> tuple[list[dict[str, Any]], Calibration]:
    """An eval's predictions and the calibration they were scored with (from its metrics.json)."""
    rows = []
    with path.open() as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(path, n, None, f"not JSON ({exc.msg})") from exc
    applied = RAW
    metrics = path.parent / "metrics.json"
    if metrics.is_file():
        applied = Calibration(**json.loads(metrics.read_text()).get("calibration", {}))
    return rows, applied


def calibrate(cfg: CalibrateConfig) -> dict[str, Any]:
    if cfg.data is not None:
        from gram_ray.eval.run import EvalConfig, evaluate

        scorer = cfg.scorer.model_copy(update={"model": str(cfg.model), "calibrated": False})
        evaluate(EvalConfig(data=cfg.data, out=cfg.out, format="pairs", scorer=scorer, offset=cfg.offset,
                            limit=cfg.limit, num_actors=cfg.num_actors))
        rows, applied = read_predictions(cfg.out / "predictions.jsonl")  # type: ignore[operator]
        source = {"data": str(cfg.data), "offset": cfg.offset, "limit": cfg.limit}
    else:
        rows, applied = read_predictions(cfg.predictions)  # type: ignore[arg-type]
        end = None if cfg.limit is None else cfg.offset + cfg.limit
        rows = rows[cfg.offset:end]
        source = {"predictions": str(cfg.predictions), "offset": cfg.offset, "limit": cfg.limit}
    if not rows:
        raise ValueError("no predictions to fit on (check offset and limit)")
    calibration = fit_calibration(*first_position_observations(rows, applied))
    raw = recalibrated(rows, RAW, applied)
    record = {
        **calibration.as_dict(),
        "fitted_on": {**source, "pairs": len(rows)},
        "before": summarize(raw),
        "after": summarize(recalibrated(rows, calibration, applied)),
    }
    with atomic_writer(cfg.model / CALIBRATION_FILE) as f:
        json.dump(record, f, indent=2)
    return record
