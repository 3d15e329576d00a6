"""Losses as pure tensor functions (no model, no trainer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def verdict_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    label_smoothing: float = 0.1,
    reduction: str = "mean",
) -> torch.Tensor:
    """GRAM's stage-2 loss: cross-entropy over the two verdict logits with label smoothing.

    Args:
        logits: ``[N, 2]`` logits of the tokens "A" and "B" at the verdict position.
        target: either hard labels ``[N]`` (integer: 0 = "A is better", 1 = "B is better") or soft
            labels ``[N]`` (floating point: ``prob_a``, the probability that A is better).
        label_smoothing: ε; the target distribution becomes ``(1-ε)·q + ε/2`` on each token.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Why this is a regularized Bradley-Terry loss: write ``l = logit_A - logit_B`` (the reward margin
    ``r(A) - r(B)``), so ``p_A = σ(l)``. For a hard label "A" the smoothed cross-entropy is

        -(1 - ε/2)·log σ(l) - (ε/2)·log σ(-l)
          = -log σ(l) + (ε/2)·l                    (using log σ(-l) = log σ(l) - l)

    i.e. the Bradley-Terry loss ``-log σ(r_w - r_l)`` plus a linear penalty ``(ε/2)·(r_w - r_l)`` on
    the margin. Plain BT keeps pushing the margin to infinity; the penalty makes the optimum finite,
    at ``σ(l) = 1 - ε/2`` (margin ``log((2 - ε)/ε)``), which is what keeps GRAM's probabilities
    calibrated.
    """
    if logits.ndim != 2 or logits.shape[-1] != 2:
        raise ValueError(f"logits must have shape [N, 2], got {tuple(logits.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    log_p = F.log_softmax(logits.float(), dim=-1)
    if target.is_floating_point():
        q_a = target.to(log_p.dtype)
        q = torch.stack([q_a, 1.0 - q_a], dim=-1)
    else:
        q = F.one_hot(target.long(), num_classes=2).to(log_p.dtype)
    q = (1.0 - label_smoothing) * q + label_smoothing / 2.0
    loss = -(q * log_p).sum(dim=-1)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")


def order_consistency_penalty(logits: torch.Tensor) -> torch.Tensor:
    """The squared position effect per pair, for logits of each pair in both orders.

    Args:
        logits: ``[2N, 2]`` verdict logits laid out as ``verdict_batch`` builds them with both
            orders: row ``2i`` is pair i with its response_a shown first, row ``2i + 1`` the same
            pair swapped.

    With margins ``m = logit_A - logit_B``, a judge that ignores position has ``m_ab = -m_ba``
    (the same preference, named by the other letter); ``(m_ab + m_ba) / 2`` is what the first
    position adds in log-odds. The penalty is its mean square. Cross-entropy on both orders only
    asks each order to be right; this asks the two to agree, which is what the position-flip rate
    measures.
    """
    if logits.ndim != 2 or logits.shape[-1] != 2 or logits.shape[0] % 2:
        raise ValueError(f"logits must have shape [2N, 2] (each pair in both orders), got {tuple(logits.shape)}")
    margins = (logits[:, 0] - logits[:, 1]).float().view(-1, 2)
    return (0.5 * margins.sum(dim=-1)).pow(2).mean()


def bradley_terry_loss(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor) -> torch.Tensor:
    """Discriminative baseline: ``-log σ(r_chosen - r_rejected)``, averaged."""
    return -F.logsigmoid(reward_chosen.float() - reward_rejected.float()).mean()


def next_token_targets(labels: torch.Tensor, ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the next token is a target, and those targets: ``keep[b, t]`` says position ``t``
    predicts ``labels[b, t + 1]``; ``targets`` are those labels in row-major order. ``labels`` are
    the input ids with ``ignore_index`` on tokens that are not targets (not pre-shifted)."""
    shifted = labels[:, 1:]
    keep = shifted != ignore_index
    return keep, shifted[keep]


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, averaged over targets: ``logits`` ``[M, V]`` at the M target
    positions (see :func:`next_token_targets`), ``targets`` ``[M]``. Training computes the lm_head
    only at those positions; :func:`masked_lm_loss` is the same loss from full logits."""
    return F.cross_entropy(logits.float(), targets)


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """:func:`lm_loss` from full ``[B, L, V]`` logits and labels holding ``ignore_index`` on prompt tokens."""
    keep, targets = next_token_targets(labels, ignore_index)
    return lm_loss(logits[:, :-1][keep], targets)
