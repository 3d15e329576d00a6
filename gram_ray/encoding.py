"""Model-free encoding: texts cut to token budgets, verdict and response prompts as token ids,
padding and packing. Training, scoring, reasoning and evaluation build their sequences here, so each
sees exactly the tokens the others see.

Truncation keeps the start of each text at a token budget (cut at a character offset, so the kept
text is a prefix of the original) and reports which texts were cut; nothing is ever dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gram_ray import judge
from gram_ray.judge import Pair


@dataclass(frozen=True)
class Truncation:
    """Which fields of one pair were cut to their token budgets."""

    prompt: bool = False
    response_a: bool = False
    response_b: bool = False

    @property
    def any(self) -> bool:
        return self.prompt or self.response_a or self.response_b


def truncate_texts(tokenizer: Any, texts: list[str], max_tokens: int) -> tuple[list[str], list[bool]]:
    """Keep the first ``max_tokens`` tokens of each text, cut at a character offset so the kept text
    is exactly a prefix of the original; returns the texts and which were cut."""
    if not texts:
        return [], []
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False)
    cut, flags = [], []
    for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"], strict=True):
        if len(ids) <= max_tokens:
            cut.append(text)
            flags.append(False)
        else:
            cut.append(text[: offsets[max_tokens - 1][1]])
            flags.append(True)
    return cut, flags


def longer_visible(tokenizer: Any, a: list[str], b: list[str], max_tokens: int) -> list[str | None]:
    """For each pair, which response ("A", "B"; None for a tie) has more characters left once both are
    cut to ``max_tokens``: the "longer visible response" baseline's verdict, on what the judge sees."""
    a, _ = truncate_texts(tokenizer, a, max_tokens)
    b, _ = truncate_texts(tokenizer, b, max_tokens)
    return ["A" if len(x) > len(y) else "B" if len(x) < len(y) else None for x, y in zip(a, b, strict=True)]


def truncate_pairs(
    tokenizer: Any, pairs: Sequence[Pair], max_prompt_tokens: int, max_response_tokens: int,
) -> tuple[list[tuple[str, str, str]], list[Truncation]]:
    """Each pair as ``(question, response_a, response_b)`` texts at their budgets (the prompt rendered
    as the question first), with what was cut."""
    questions, q_flags = truncate_texts(tokenizer, [judge.render_question(p.prompt) for p in pairs], max_prompt_tokens)
    responses, r_flags = truncate_texts(
        tokenizer, [p.response_a for p in pairs] + [p.response_b for p in pairs], max_response_tokens
    )
    n = len(pairs)
    truncations = [Truncation(q_flags[i], r_flags[i], r_flags[n + i]) for i in range(n)]
    return list(zip(questions, responses[:n], responses[n:], strict=True)), truncations


def encode_verdict(tokenizer: Any, question: str, response_a: str, response_b: str) -> list[int]:
    """Token ids of the verdict prompt, ending where the verdict token is predicted."""
    return judge.encode_user_turn(tokenizer, judge.verdict_content(question, response_a, response_b))


def encode_response(tokenizer: Any, question: str, response: str) -> list[int]:
    """A (question, response) conversation, for scalar reward heads (the Bradley-Terry baseline)."""
    question, response = judge.untrusted(question), judge.untrusted(response)
    if judge.uses_chat_template(tokenizer):
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": response}]
        return judge.encode_text(tokenizer, tokenizer.apply_chat_template(messages, tokenize=False))
    return judge.encode_text(tokenizer, f"{question}\n\n{response}", add_special_tokens=True)


def pad(rows: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ids, attention mask and lengths of ``rows`` padded to one width.

    ``right`` (scoring, training) keeps every real token at its true position; ``left``
    (generation) puts each prompt right before its first new token.
    """
    if side not in ("right", "left"):
        raise ValueError(f"side: {side!r} (right or left)")
    lengths = torch.tensor([len(r) for r in rows])
    width = int(lengths.max())
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, r in enumerate(rows):
        span = slice(0, len(r)) if side == "right" else slice(width - len(r), width)
        input_ids[i, span] = torch.tensor(list(r), dtype=torch.long)
        mask[i, span] = 1
    return input_ids, mask, lengths


def right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and lengths: every real token keeps its true position."""
    return pad(rows, pad_id, "right")


def pack_batches(lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Indices grouped into batches, longest first, each under the padded-token budget.

    A sequence longer than the budget still gets a batch of its own (never dropped).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted descending: the first member of a batch sets its padded length.
        width = lengths[current[0]] if current else lengths[i]
        if current and ((len(current) + 1) * width > max_batch_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
