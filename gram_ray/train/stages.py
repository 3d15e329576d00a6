"""The training stages, in one table: how each builds its batches, which objective it trains, which
row fields it needs and which kind of PEFT adapter it makes. The loop, the data checks and the
model builder all read this table; adding a stage is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from gram_ray.data import PairRow
from gram_ray.train import examples
from gram_ray.train.examples import Batch
from gram_ray.train.modules import BradleyTerryLoss, ResponseLMLoss, VerdictLoss


@dataclass(frozen=True)
class Stage:
    name: str
    build_batch: Callable[[Sequence[PairRow], Any, Any], Batch]  # (rows, tokenizer, TrainConfig) → Batch
    objective: Callable[[nn.Module, list[int], Any, list[int] | None], nn.Module]  # (model, verdict ids, cfg, prefix ids)
    required: tuple[str, ...]  # row fields every row must have ("label": a label or prob_a)
    peft_task_type: str


def _rationale_batch(stage: str) -> Callable[[Sequence[PairRow], Any, Any], Batch]:
    def build(rows: Sequence[PairRow], tokenizer: Any, cfg: Any) -> Batch:
        return examples.rationale_batch(stage, rows, tokenizer, cfg.max_prompt_tokens, cfg.max_response_tokens,
                                        cfg.max_rationale_tokens, cfg.both_orders)
    return build


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "pretrain",
            lambda rows, tok, cfg: examples.pretrain_batch(rows, tok, cfg.max_prompt_tokens, cfg.max_response_tokens),
            lambda model, ids, cfg, prefix: ResponseLMLoss(model, cfg.unpadded),
            (), "CAUSAL_LM",
        ),
        Stage(
            "finetune",
            lambda rows, tok, cfg: examples.verdict_batch(
                rows, tok, cfg.max_prompt_tokens, cfg.max_response_tokens, cfg.both_orders, cfg.soft_labels),
            lambda model, ids, cfg, prefix: VerdictLoss(model, ids, cfg.label_smoothing, prefix, cfg.order_consistency,
                                                          cfg.unpadded),
            ("label",), "CAUSAL_LM",
        ),
        Stage(
            "bt",
            lambda rows, tok, cfg: examples.bt_batch(rows, tok, cfg.max_prompt_tokens, cfg.max_response_tokens),
            lambda model, ids, cfg, prefix: BradleyTerryLoss(model, cfg.unpadded),
            ("label",), "SEQ_CLS",
        ),
        # GRAM-R²: the loss covers the generated reply (rationale and verdict, or the rationale).
        Stage("reasoner", _rationale_batch("reasoner"), lambda model, ids, cfg, prefix: ResponseLMLoss(model, cfg.unpadded),
              ("label", "rationale"), "CAUSAL_LM"),
        Stage("prover", _rationale_batch("prover"), lambda model, ids, cfg, prefix: ResponseLMLoss(model, cfg.unpadded),
              ("label", "rationale"), "CAUSAL_LM"),
    )
}


def stage(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"stage: unknown {name!r} ({', '.join(STAGES)})") from None


def missing_field(stage_name: str, row: PairRow) -> str | None:
    """The first field this stage needs that ``row`` lacks (a label may be given as prob_a)."""
    for name in stage(stage_name).required:
        if name == "label" and row.label is None and row.prob_a is None:
            return "label"
        if name == "rationale" and row.rationale is None:
            return "rationale"
        if name == "rationale" and row.label is None:
            return "label"
    return None
