"""Official scoring rules on hand-made fixtures (each expected value worked out in the comment)."""

import pytest

from gram_ray.eval.metrics import (
    PairPrediction,
    expected_calibration_error,
    judgebench_correct,
    judgebench_metrics,
    length_split,
    pair_calibration,
    paired_accuracy_difference,
    pairs_metrics,
    rewardbench_metrics,
    rmbench_domain,
    rmbench_metrics,
    wilson_interval,
)


def test_rmbench_hard_normal_easy():
    # Prompt 1: all 9 cells right. Prompt 2: only the diagonal and the lower triangle right,
    # except M[2][0] (a tie at 0.5 counts as wrong).
    good = [[0.9] * 3] * 3
    mixed = [
        [0.8, 0.2, 0.1],  # diagonal 0.8 ✓, upper 0.2 ✗ 0.1 ✗
        [0.7, 0.6, 0.4],  # lower 0.7 ✓, diagonal ✓, upper ✗
        [0.5, 0.9, 0.7],  # lower 0.5 ✗ (tie), 0.9 ✓, diagonal ✓
    ]
    result = rmbench_metrics([("code", good), ("code", mixed)])
    code = result["domains"]["code"]
    assert code["hard"] == pytest.approx((1 + 0) / 2)  # upper: 3/3 and 0/3
    assert code["normal"] == pytest.approx((1 + 1) / 2)
    assert code["easy"] == pytest.approx((1 + 2 / 3) / 2)
    assert code["score"] == pytest.approx((0.5 + 1 + 5 / 6) / 3)
    # Overall is the mean over domains (not over prompts).
    two = rmbench_metrics([("code", good), ("safety", mixed), ("safety", mixed)])
    assert two["overall"] == pytest.approx((1.0 + (0 + 1 + 2 / 3) / 3) / 2)


def test_rmbench_domain_names():
    assert rmbench_domain("rm-bench/safety-refuse") == "safety"
    assert rmbench_domain("rm-bench/code") == "code"
    assert rmbench_domain("chat") == "chat"


@pytest.mark.parametrize(
    "label, p_ab, p_ba, correct",
    [
        ("A>B", 0.9, 0.8, True),   # +1 +1
        ("A>B", 0.9, 0.3, False),  # +1 -1 = 0: inconsistent counts as wrong
        ("A>B", 0.9, 0.5, True),   # +1 + 0 (tie)
        ("B>A", 0.2, 0.1, True),   # both say B
        ("B>A", 0.5, 0.5, False),  # two ties: 0
        ("B>A", 0.6, 0.4, False),  # -1 +1
    ],
)
def test_judgebench_both_order_rule(label, p_ab, p_ba, correct):
    assert judgebench_correct(label, p_ab, p_ba) is correct


def test_judgebench_per_source():
    items = [
        ("mmlu-pro-health", "A>B", 0.9, 0.8),
        ("mmlu-pro-law", "A>B", 0.9, 0.2),
        ("livebench-math", "B>A", 0.1, 0.1),
        ("livecodebench", "A>B", 0.4, 0.4),
    ]
    result = judgebench_metrics(items)
    assert result["overall"] == pytest.approx(2 / 4)
    assert result["sources"]["mmlu-pro"] == {"accuracy": 0.5, "n": 2}
    assert result["sources"]["livebench-math"]["accuracy"] == 1.0
    assert result["sources"]["livecodebench"]["accuracy"] == 0.0


def test_rewardbench_section_weights():
    # Chat: alpacaeval-easy 100% (weight 100), mt-bench-easy 0% (weight 28) → 100/128.
    # Reasoning: math-prm 50% (weight 984, upweighted), hep-python 100% (164) → (492 + 164)/1148.
    items = [("alpacaeval-easy", 0.9), ("mt-bench-easy", 0.2), ("math-prm", 0.9), ("math-prm", 0.1), ("hep-python", 0.7)]
    result = rewardbench_metrics(items)
    assert result["sections"]["Chat"] == pytest.approx(100 / 128)
    assert result["sections"]["Reasoning"] == pytest.approx((0.5 * 984 + 164) / (984 + 164))
    assert set(result["sections"]) == {"Chat", "Reasoning"}
    assert result["overall"] == pytest.approx((100 / 128 + 656 / 1148) / 2)
    assert result["subsets"]["math-prm"] == {"accuracy": 0.5, "n": 2}


def test_pairs_accuracy_interval_flip_rate_and_ece():
    preds = [
        PairPrediction("A", p_a_better=0.8, p_ab=0.9, p_ba=0.7),  # right, consistent
        PairPrediction("B", p_a_better=0.3, p_ab=0.4, p_ba=0.2),  # right, consistent
        PairPrediction("A", p_a_better=0.55, p_ab=0.9, p_ba=0.2),  # right, flips with the order
        PairPrediction("B", p_a_better=0.5, p_ab=0.5, p_ba=0.5),  # tie: wrong, no flip (tie both times)
    ]
    result = pairs_metrics(preds)
    assert result["accuracy"] == 0.75 and result["flip_rate"] == 0.25 and result["n"] == 4
    low, high = result["accuracy_ci95"]
    assert low < 0.75 < high and (low, high) == pytest.approx(wilson_interval(3, 4))


def test_pair_calibration_counts_both_orientations():
    # A judge that always says 0.5, on a set whose better response is always first: calibrated.
    ece, diagram = pair_calibration([0.5] * 4, [True] * 4)
    assert ece == pytest.approx(0.0) and diagram[5]["count"] == 8
    # 0.9 and 0.8 for A, A right once: (0.9, T), (0.8, F), (0.1, F), (0.2, T) → bins 9, 8, 1, 2, each off by 0.1, 0.8, 0.1, 0.8.
    ece, _ = pair_calibration([0.9, 0.8], [True, False])
    assert ece == pytest.approx((0.1 + 0.8 + 0.1 + 0.8) / 4)


def test_wilson_interval_known_value():
    # 8 of 10: Wilson 95% interval is [0.4902, 0.9433].
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_ece_by_hand():
    # Bin 9 ([0.9, 1]): p 0.9, 0.9, outcomes 1, 0 → |0.9 - 0.5| = 0.4, weight 2/4.
    # Bin 1 ([0.1, 0.2)): p 0.1, 0.1, outcomes 0, 0 → |0.1 - 0| = 0.1, weight 2/4.
    ece, diagram = expected_calibration_error([0.9, 0.9, 0.1, 0.1], [True, False, False, False])
    assert ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    assert diagram[9]["count"] == 2 and diagram[9]["frequency"] == 0.5
    perfect, _ = expected_calibration_error([1.0, 0.0], [True, False])
    assert perfect == 0.0


def test_paired_accuracy_difference():
    # a is right on rows 0-2, b on row 0 only: per-row differences 0, 1, 1, 0, mean 0.5. A resample of
    # four of them has a mean in [0, 1]; with n = 4 the 95% interval spans nearly all of it.
    diff, low, high = paired_accuracy_difference([True, True, True, False], [True, False, False, False])
    assert diff == 0.5 and 0.0 <= low < 0.5 < high <= 1.0
    # Every row differs the same way: no resample can change the mean, so the interval is a point.
    assert paired_accuracy_difference([True] * 5, [False] * 5) == (1.0, 1.0, 1.0)
    assert paired_accuracy_difference([True, False], [True, False]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same non-empty rows"):
        paired_accuracy_difference([True], [True, False])


def test_length_split_on_a_length_detector_and_a_content_judge():
    labels = ["A", "B", "A", "B", "A"]
    longer = ["A", "B", "B", "A", None]  # rows 0-1: the longer response is better; 2-3: the shorter; 4: a tie
    detector = [0.9, 0.1, 0.2, 0.8, 0.6]  # always picks the longer response
    split = length_split(labels, detector, longer)
    # longer_wins: 2 of 2 right; shorter_wins: 0 of 2; its verdict is the longer one in 4 of 4 (the tie left out)
    assert (split["longer_wins"]["n"], split["longer_wins"]["accuracy"]) == (2, 1.0)
    assert (split["shorter_wins"]["n"], split["shorter_wins"]["accuracy"]) == (2, 0.0)
    assert split["agrees_with_longer"] == 1.0
    assert split["shorter_wins"]["accuracy_ci95"] == pytest.approx(list(wilson_interval(0, 2)))
    judge = [0.9, 0.6, 0.7, 0.5, 0.6]  # right on rows 0, 2; wrong on 1; a tie (no verdict) on 3
    split = length_split(labels, judge, longer)
    # longer_wins: row 0 right, row 1 wrong -> 1/2; shorter_wins: row 2 right, row 3 a tie -> 1/2;
    # verdict = longer on row 0 only (row 1 says A, longer B; row 2 says A, longer B; row 3 a tie) -> 1/4
    assert split["longer_wins"]["accuracy"] == 0.5 and split["shorter_wins"]["accuracy"] == 0.5
    assert split["agrees_with_longer"] == 0.25
    empty = length_split(["A"], [0.7], [None])
    assert empty["longer_wins"] == {"n": 0, "accuracy": None, "accuracy_ci95": [0.0, 1.0]} and empty["agrees_with_longer"] is None
