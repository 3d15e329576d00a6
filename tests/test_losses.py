"""Losses against values worked out by hand.

With l = logit_A - logit_B = 2: -log σ(2) = log(1 + e^-2) = 0.126928, -log σ(-2) = 2.126928.
"""

import math

import pytest
import torch

from gram_ray.losses import (
    bradley_terry_loss,
    lm_loss,
    masked_lm_loss,
    next_token_targets,
    order_consistency_penalty,
    verdict_loss,
)

NLL_POS = math.log1p(math.exp(-2.0))  # -log σ(2) = 0.1269280110
NLL_NEG = NLL_POS + 2.0  # -log σ(-2)


def test_hard_label_without_smoothing_is_bradley_terry():
    logits = torch.tensor([[2.0, 0.0]])
    assert verdict_loss(logits, torch.tensor([0]), label_smoothing=0.0).item() == pytest.approx(0.126928, abs=1e-6)
    assert verdict_loss(logits, torch.tensor([1]), label_smoothing=0.0).item() == pytest.approx(2.126928, abs=1e-6)


def test_hard_label_with_smoothing_adds_a_margin_penalty():
    # -(0.95 log σ(2) + 0.05 log σ(-2)) = 0.95*0.126928 + 0.05*2.126928 = 0.226928 = BT + ε/2 * l
    loss = verdict_loss(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), label_smoothing=0.1)
    assert loss.item() == pytest.approx(0.226928, abs=1e-6)
    assert loss.item() == pytest.approx(NLL_POS + 0.05 * 2.0, abs=1e-6)


def test_soft_labels_with_and_without_smoothing():
    logits = torch.tensor([[1.0, -1.0]])  # l = 2
    # q = 0.8: 0.8*0.126928 + 0.2*2.126928 = 0.526928
    assert verdict_loss(logits, torch.tensor([0.8]), label_smoothing=0.0).item() == pytest.approx(0.526928, abs=1e-6)
    # q' = 0.9*0.8 + 0.05 = 0.77: 0.77*0.126928 + 0.23*2.126928 = 0.586928
    assert verdict_loss(logits, torch.tensor([0.8]), label_smoothing=0.1).item() == pytest.approx(0.586928, abs=1e-6)
    # Equal logits: log 2 whatever the target.
    assert verdict_loss(torch.zeros(1, 2), torch.tensor([0.25])).item() == pytest.approx(math.log(2), abs=1e-6)


def test_soft_label_one_equals_hard_label_a():
    logits = torch.tensor([[0.3, -1.2], [2.0, 1.0]])
    soft = verdict_loss(logits, torch.tensor([1.0, 0.0]), label_smoothing=0.1)
    hard = verdict_loss(logits, torch.tensor([0, 1]), label_smoothing=0.1)
    assert soft.item() == pytest.approx(hard.item(), abs=1e-6)


def test_smoothing_bounds_the_optimal_margin():
    # The minimiser of BT + ε/2·l is σ(l) = 1 - ε/2, i.e. l = log((2-ε)/ε).
    eps = 0.1
    l_star = math.log((2 - eps) / eps)
    logits = torch.tensor([[l_star, 0.0]], requires_grad=True)
    verdict_loss(logits, torch.tensor([0]), label_smoothing=eps).backward()
    assert logits.grad.abs().max().item() < 1e-6


def test_reductions_and_validation():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    per_item = verdict_loss(logits, torch.tensor([0, 0]), label_smoothing=0.0, reduction="none")
    assert per_item.tolist() == pytest.approx([0.126928, 2.126928], abs=1e-6)
    assert verdict_loss(logits, torch.tensor([0, 0]), 0.0, "sum").item() == pytest.approx(2.253856, abs=1e-6)
    with pytest.raises(ValueError):
        verdict_loss(torch.zeros(3), torch.tensor([0]))
    with pytest.raises(ValueError):
        verdict_loss(torch.zeros(1, 2), torch.tensor([0]), label_smoothing=1.0)


def test_bradley_terry_loss():
    assert bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0])).item() == pytest.approx(0.313262, abs=1e-6)


def test_masked_lm_loss_counts_only_labelled_tokens():
    logits = torch.zeros(1, 4, 5)  # uniform over 5 tokens: every predicted token costs log 5
    logits[0, 0, 3] = 100.0  # position 0 predicts token 3 perfectly, but its label is masked
    labels = torch.tensor([[7, -100, 1, 2]])
    assert masked_lm_loss(logits, labels).item() == pytest.approx(math.log(5), abs=1e-6)


def test_lm_loss_by_hand():
    # Two targets over 3 tokens. Row 1: logits (ln 2, 0, 0) → p(token 0) = 2/4; row 2: uniform → 1/3.
    logits = torch.tensor([[math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]])
    expected = (-math.log(0.5) - math.log(1 / 3)) / 2  # 0.895880
    assert lm_loss(logits, torch.tensor([0, 2])).item() == pytest.approx(expected, abs=1e-6)


def test_next_token_targets_shift_and_mask():
    keep, targets = next_token_targets(torch.tensor([[5, -100, 7, 8], [1, 2, -100, -100]]))
    # position t predicts label t+1: row 0 keeps t=1 (7), t=2 (8); row 1 keeps t=0 (2)
    assert keep.tolist() == [[False, True, True], [True, False, False]]
    assert targets.tolist() == [7, 8, 2]


def test_order_consistency_penalty_by_hand():
    # Pair 1: m_ab = 2 - 0 = 2, m_ba = 1 - 0 = 1 → position effect (2 + 1)/2 = 1.5 → 2.25.
    # Pair 2: m_ab = 0 - 3 = -3, m_ba = 3 - 0 = 3 → opposite margins, no position effect → 0.
    logits = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0], [3.0, 0.0]])
    assert order_consistency_penalty(logits).item() == pytest.approx((2.25 + 0.0) / 2)
    with pytest.raises(ValueError, match="both orders"):
        order_consistency_penalty(torch.zeros(3, 2))
