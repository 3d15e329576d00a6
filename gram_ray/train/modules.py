"""One ``nn.Module`` per stage around the Hugging Face model, returning that stage's loss.

Wrapping the computation in a module (rather than calling the decoder from the training loop) keeps
it inside DDP's / FSDP's ``forward``, so gradient synchronisation sees it. None of the stages ever
materialises full-vocabulary logits where it does not need them:

* finetune: the decoder's last hidden state × the two verdict rows of the lm_head;
* pretrain, reasoner, prover: the lm_head only at positions whose next token is a target (the
  responses; the rationale and verdict);
* bt: a scalar head on the last token.

Every stage takes ``unpadded`` (default: on a CPU): the sequences of a micro-batch run through the
decoder in sets of equal length (stage 2: a pair's two orders; otherwise, as a rule, one sequence),
without padding, and their results are joined. A CPU's cost grows with every padded token (a third
of a batch of real pairs at 256-token budgets), while a GPU gains more from one wide padded batch
than it loses to padding. The loss and its gradients are the same either way; only the work differs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gram_ray import kv_cache
from gram_ray.head import (
    apply_logit_transforms,
    decoder_of,
    last_token_hidden,
    scalar_rewards,
    unwrap,
    verdict_logits,
    verdict_rows,
)
from gram_ray.losses import (
    bradley_terry_loss,
    lm_loss,
    next_token_targets,
    order_consistency_penalty,
    verdict_loss,
)
from gram_ray.train.examples import Batch


def length_groups(batch: Batch, unpadded: bool | None) -> list[torch.Tensor]:
    """Row indices run through the decoder together: the whole batch (padded), or one set per length.
    ``unpadded=None`` means unpadded on a CPU only."""
    device = batch.input_ids.device
    if not (unpadded if unpadded is not None else device.type == "cpu"):
        return [torch.arange(batch.input_ids.shape[0], device=device)]
    by_length: dict[int, list[int]] = {}
    for i, n in enumerate(batch.lengths.tolist()):
        by_length.setdefault(int(n), []).append(i)
    return [torch.tensor(rows, device=device) for rows in by_length.values()]


def in_batch_order(parts: list[torch.Tensor], groups: list[torch.Tensor]) -> torch.Tensor:
    """Per-group results (rows in group order) back in the batch's row order."""
    return torch.cat(parts)[torch.argsort(torch.cat(groups))] if len(groups) > 1 else parts[0]


def trimmed(batch: Batch, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ids, mask and lengths of ``rows``, cut to the longest of them."""
    lengths = batch.lengths[rows]
    width = int(lengths.max())
    return batch.input_ids[rows, :width], batch.attention_mask[rows, :width], lengths


class VerdictLoss(nn.Module):
    """Stage 2: cross-entropy over the "A"/"B" logits at the verdict position, label-smoothed.

    With ``prefix_ids`` (the judge instruction every verdict prompt starts with, ~180 tokens), the
    prefix runs through the model once per batch and its key/value states are shared by every
    sequence, as the scorer does at inference. Gradients flow through the shared states, so the
    loss and the gradients equal the full-sequence computation; the forward costs one prefix per
    batch instead of one per sequence.

    ``unpadded``: see the module's docstring (a pair's two orders run together, unpadded).
    """

    def __init__(
        self, model: nn.Module, verdict_ids: list[int], label_smoothing: float, prefix_ids: list[int] | None = None,
        order_consistency: float = 0.0, unpadded: bool | None = None,
    ):
        super().__init__()
        self.model = model
        self.verdict_ids = verdict_ids
        self.label_smoothing = label_smoothing
        self.prefix_ids = list(prefix_ids or [])
        self.order_consistency = order_consistency
        self.unpadded = unpadded

    def _shares_prefix(self, batch: Batch) -> bool:
        p = len(self.prefix_ids)
        if p == 0 or int(batch.lengths.min()) <= p:
            return False
        prefix = torch.tensor(self.prefix_ids, device=batch.input_ids.device)
        return bool((batch.input_ids[:, :p] == prefix).all())

    def logits(self, batch: Batch) -> torch.Tensor:
        decoder = decoder_of(self.model)
        p = len(self.prefix_ids) if self._shares_prefix(batch) else 0
        prefix_kv = None
        if p:
            prefix_kv = kv_cache.key_values(kv_cache.returned(decoder(input_ids=batch.input_ids[:1, :p], use_cache=True)))
        groups = length_groups(batch, self.unpadded)
        lasts = []
        for rows in groups:
            ids, mask, lengths = trimmed(batch, rows)
            width = ids.shape[1]
            if prefix_kv is None:
                hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
            else:
                n = len(rows)
                positions = (torch.arange(width - p, device=ids.device) + p).unsqueeze(0).expand(n, -1)
                hidden = decoder(
                    input_ids=ids[:, p:], attention_mask=mask, position_ids=positions, use_cache=True,
                    **kv_cache.argument(kv_cache.broadcast(prefix_kv, n, unwrap(self.model).config)),
                ).last_hidden_state
            lasts.append(last_token_hidden(hidden, lengths - p))
        last = in_batch_order(lasts, groups)
        weight, bias = verdict_rows(self.model, self.verdict_ids)
        return verdict_logits(last, weight, bias, unwrap(self.model).config)

    def forward(self, batch: Batch) -> torch.Tensor:
        logits = self.logits(batch)
        loss = verdict_loss(logits, batch.target.to(batch.input_ids.device), self.label_smoothing)
        if self.order_consistency:
            loss = loss + self.order_consistency * order_consistency_penalty(logits)
        return loss


class ResponseLMLoss(nn.Module):
    """Stage 1: next-token loss on the response tokens only (labels are -100 elsewhere), averaged over
    every target token of the micro-batch (so the order in which groups run does not matter)."""

    def __init__(self, model: nn.Module, unpadded: bool | None = None):
        super().__init__()
        self.model = model
        self.unpadded = unpadded

    def forward(self, batch: Batch) -> torch.Tensor:
        head = unwrap(self.model).get_output_embeddings()
        logits, targets = [], []
        for rows in length_groups(batch, self.unpadded):
            ids, mask, _ = trimmed(batch, rows)
            hidden = decoder_of(self.model)(input_ids=ids, attention_mask=mask).last_hidden_state
            keep, group_targets = next_token_targets(batch.labels[rows, : ids.shape[1]].to(hidden.device))
            logits.append(head(hidden[:, :-1][keep]))
            targets.append(group_targets)
        return lm_loss(apply_logit_transforms(torch.cat(logits).float(), unwrap(self.model).config), torch.cat(targets))


class BradleyTerryLoss(nn.Module):
    """Discriminative baseline: a scalar head on the last token, ``-log σ(r_better - r_worse)``.

    ``model`` is an ``AutoModelForSequenceClassification`` (num_labels=1), so the trained model
    saves and loads as a standard reward model; the last token is taken from the lengths rather
    than from pad-token detection (see :func:`gram_ray.head.scalar_rewards`).
    """

    def __init__(self, model: nn.Module, unpadded: bool | None = None):
        super().__init__()
        self.model = model
        self.unpadded = unpadded

    def rewards(self, batch: Batch) -> torch.Tensor:
        groups = length_groups(batch, self.unpadded)
        return in_batch_order([scalar_rewards(self.model, *trimmed(batch, rows)) for rows in groups], groups)

    def forward(self, batch: Batch) -> torch.Tensor:
        rewards = self.rewards(batch)
        return bradley_terry_loss(rewards[0::2], rewards[1::2])


def to_device(batch: Batch, device: Any) -> Batch:
    return Batch(
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        lengths=batch.lengths.to(device),
        target=None if batch.target is None else batch.target.to(device),
        labels=None if batch.labels is None else batch.labels.to(device),
        truncated=batch.truncated,
    )
