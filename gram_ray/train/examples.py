"""Turning pair rows into training tensors for each stage (pure functions of rows and a tokenizer).

Truncation and encoding come from :mod:`gram_ray.encoding` and templates from :mod:`gram_ray.judge`,
so training sees exactly the sequences that scoring and serving will see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gram_ray import judge
from gram_ray.data import PairRow
from gram_ray.encoding import encode_response, encode_verdict, right_pad, truncate_pairs, truncate_texts


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, L] right-padded
    attention_mask: torch.Tensor  # [B, L]
    lengths: torch.Tensor  # [B]
    target: torch.Tensor | None = None  # verdict: [B] int (0 = A) or float prob_a; bt: unused
    labels: torch.Tensor | None = None  # pretrain: [B, L] with -100 on prompt and padding
    truncated: int = 0  # texts cut to their token budget in this batch

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())


def _pad(sequences: Sequence[list[int]], pad_id: int, labels: Sequence[list[int]] | None = None) -> Batch:
    ids, mask, lengths = right_pad(sequences, pad_id)
    return Batch(ids, mask, lengths, labels=right_pad(labels, -100)[0] if labels is not None else None)


def _truncated_fields(rows: Sequence[PairRow], tokenizer: Any, max_prompt: int, max_response: int):
    """Questions, responses A and B at their budgets, and how many texts were cut."""
    texts, truncations = truncate_pairs(tokenizer, [r.pair for r in rows], max_prompt, max_response)
    questions, a, b = (list(column) for column in zip(*texts, strict=True))
    return questions, a, b, sum(t.prompt + t.response_a + t.response_b for t in truncations)


def verdict_batch(
    rows: Sequence[PairRow], tokenizer: Any, max_prompt: int, max_response: int,
    both_orders: bool = True, soft_labels: bool = False,
) -> Batch:
    """Stage 2: verdict prompts; target = which response is better (or prob_a), per order."""
    questions, a, b, truncated = _truncated_fields(rows, tokenizer, max_prompt, max_response)
    sequences: list[list[int]] = []
    targets: list[float] = []
    for row, q, ra, rb in zip(rows, questions, a, b, strict=True):
        if row.label is None and row.prob_a is None:
            raise ValueError(f"line {row.line}: label: missing (the verdict loss needs labeled pairs)")
        p_a = float(row.prob_a) if soft_labels and row.prob_a is not None else (1.0 if row.label == "A" else 0.0)
        sequences.append(encode_verdict(tokenizer, q, ra, rb))
        targets.append(p_a)
        if both_orders:
            sequences.append(encode_verdict(tokenizer, q, rb, ra))
            targets.append(1.0 - p_a)
    batch = _pad(sequences, tokenizer.pad_token_id)
    target = torch.tensor(targets, dtype=torch.float32)
    batch.target = target if soft_labels else (target < 0.5).long()  # hard: 0 = "A", 1 = "B"
    batch.truncated = truncated
    return batch


def lm_batch(tokenizer: Any, prompts: Sequence[str], targets: Sequence[str]) -> Batch:
    """Prompt in the user turn, target as the assistant's reply (then EOS); the loss covers the reply."""
    sequences, labels = [], []
    for prompt_text, target_text in zip(prompts, targets, strict=True):
        prompt_ids = judge.encode_user_turn(tokenizer, prompt_text)
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        target_ids = judge.encode_text(tokenizer, target_text) + eos
        sequences.append(prompt_ids + target_ids)
        labels.append([-100] * len(prompt_ids) + target_ids)
    return _pad(sequences, tokenizer.pad_token_id, labels)


def pretrain_batch(rows: Sequence[PairRow], tokenizer: Any, max_prompt: int, max_response: int) -> Batch:
    """Stage 1: the question in the user turn, both answers as the assistant's reply; loss on the reply."""
    questions, a, b, truncated = _truncated_fields(rows, tokenizer, max_prompt, max_response)
    prompts, targets = zip(*(judge.pretrain_texts(q, ra, rb) for q, ra, rb in zip(questions, a, b, strict=True)), strict=True)
    batch = lm_batch(tokenizer, prompts, targets)
    batch.truncated = truncated
    return batch


def rationale_batch(
    stage: str, rows: Sequence[PairRow], tokenizer: Any, max_prompt: int, max_response: int, max_rationale: int,
    both_orders: bool = True,
) -> Batch:
    """GRAM-R². ``reasoner``: the reasoning judge prompt → ``<think>rationale</think><answer>label</answer>``;
    ``prover``: the proving prompt (label given) → ``<think>rationale</think>``. With ``both_orders``
    each pair also appears swapped, its rationale's assistant names swapped to match."""
    questions, a, b, truncated = _truncated_fields(rows, tokenizer, max_prompt, max_response)
    for row in rows:
        if row.label is None or row.rationale is None:
            missing = "label" if row.label is None else "rationale"
            raise ValueError(f"line {row.line}: {missing}: missing (stage {stage} needs labeled rows with rationales)")
    rationales, r_cut = truncate_texts(tokenizer, [r.rationale for r in rows], max_rationale)
    prompts, targets = [], []
    for row, q, ra, rb, rationale in zip(rows, questions, a, b, rationales, strict=True):
        views = [(ra, rb, row.label, rationale)]
        if both_orders:
            views.append((rb, ra, "B" if row.label == "A" else "A", judge.swap_names(rationale)))
        for first, second, label, text in views:
            if stage == "reasoner":
                prompts.append(judge.reasoning_content(q, first, second))
                targets.append(judge.reasoning_target(text, label))
            else:
                prompts.append(judge.proving_content(q, first, second, label))
                targets.append(judge.proving_target(text))
    batch = lm_batch(tokenizer, prompts, targets)
    batch.truncated = truncated + sum(r_cut)
    return batch


def bt_batch(rows: Sequence[PairRow], tokenizer: Any, max_prompt: int, max_response: int) -> Batch:
    """Bradley-Terry baseline: (question, better response) then (question, worse response), per pair."""
    questions, a, b, truncated = _truncated_fields(rows, tokenizer, max_prompt, max_response)
    sequences = []
    for row, q, ra, rb in zip(rows, questions, a, b, strict=True):
        better, worse = (ra, rb) if row.label == "A" else (rb, ra)
        for response in (better, worse):
            sequences.append(encode_response(tokenizer, q, response))
    batch = _pad(sequences, tokenizer.pad_token_id)
    batch.truncated = truncated
    return batch
