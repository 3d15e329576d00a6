"""GRAM-R² generation: reasoning verdicts (k samples per order) and proved rationales.

Pure model-level functions over already-truncated ``(question, response_a, response_b)`` texts, so
the scorer (CLI, service), evaluation and the self-training actors all generate the same way.
Prompts come from :mod:`gram_ray.judge`; generation is batched with left padding (the model sees
each prompt right before its first new token) and ``num_return_sequences`` for the k samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field

from gram_ray import encoding, judge, kv_cache


class SamplingConfig(BaseModel):
    """How rationales are sampled (``temperature: 0`` is greedy)."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(256, gt=0, description="rationale + verdict budget per sample")
    temperature: float = Field(0.7, ge=0, description="sampling temperature (0 = greedy)")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling mass")
    batch_size: int = Field(8, gt=0, description="prompts per generate call (each with its k samples)")
    seed: int | None = Field(None, description="seed the sampler per call, for reproducible votes")


@dataclass(frozen=True)
class Rationale:
    """One sampled judgement, in the caller's terms: ``verdict`` "A" means ``response_a`` is better,
    and the text's assistant names are swapped back when it was written with the pair reversed."""

    text: str
    verdict: str | None  # None: no readable <answer>
    order: str  # "ab" (response_a shown first) or "ba"


@dataclass
class Generated:
    texts: list[list[str]]  # per prompt, its samples
    new_tokens: int  # generated tokens (up to and including EOS), for throughput


def _prompt_cache(model, ids: torch.Tensor, mask: torch.Tensor, repeats: int):
    """The KV cache of each left-padded prompt but its last token, computed once and repeated
    ``repeats`` times along the batch (sample j of prompt i is row i*repeats + j, as generate lays
    them out)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1], use_cache=True)
    cache = kv_cache.returned(out)
    cache.batch_repeat_interleave(repeats)
    return cache


@torch.inference_mode()
def generate(
    model, tokenizer, contents: Sequence[str], sampling: SamplingConfig, num_samples: int = 1, share_prefill: bool = True,
) -> Generated:
    """``num_samples`` completions of each user-turn text in ``contents`` (chat template applied).
    ``share_prefill``: the samples of a prompt share one prefill (same samples, k times less prompt
    compute; ``benchmarks/reasoning_speed.py``) instead of ``num_return_sequences`` repeating it."""
    prompts = [judge.encode_user_turn(tokenizer, c) for c in contents]
    device = model.get_input_embeddings().weight.device
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    new_tokens = 0
    # Similar lengths together: less padding per generate call; results go back in input order.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    by_index: dict[int, list[str]] = {}
    for start in range(0, len(order), sampling.batch_size):
        chunk = order[start:start + sampling.batch_size]
        ids, mask, _ = encoding.pad([prompts[i] for i in chunk], pad, side="left")
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed + start)
        sample = sampling.temperature > 0
        ids, mask = ids.to(device), mask.to(device)
        cache, repeats = None, num_samples
        if num_samples > 1 and share_prefill and ids.shape[1] > 1:  # generate needs one uncached token
            cache = _prompt_cache(model, ids, mask, num_samples)
            ids, mask, repeats = ids.repeat_interleave(num_samples, 0), mask.repeat_interleave(num_samples, 0), 1
        out = model.generate(
            input_ids=ids, attention_mask=mask, **kv_cache.argument(cache), max_new_tokens=sampling.max_new_tokens,
            do_sample=sample, temperature=sampling.temperature if sample else None, top_p=sampling.top_p if sample else None,
            top_k=None, num_return_sequences=repeats, pad_token_id=pad, eos_token_id=eos,
        )
        new = out[:, ids.shape[1]:].cpu()
        for row, i in enumerate(chunk):
            samples = []
            for k in range(num_samples):
                tokens = new[row * num_samples + k].tolist()
                if eos in tokens:
                    tokens = tokens[: tokens.index(eos) + 1]
                new_tokens += len(tokens)
                samples.append(tokenizer.decode(tokens, skip_special_tokens=True))
            by_index[i] = samples
    texts = [by_index[i] for i in range(len(prompts))]
    return Generated(texts, new_tokens)


def _flip(verdict: str | None) -> str | None:
    return None if verdict is None else ("B" if verdict == "A" else "A")


def judge_with_reasoning(
    model, tokenizer, texts: Sequence[tuple[str, str, str]], votes: int, orders: str, sampling: SamplingConfig,
) -> tuple[list[list[Rationale]], int]:
    """``votes`` sampled reasoning judgements per pair and per order; (rationales per pair, new tokens)."""
    views = [("ab", (q, a, b)) for q, a, b in texts]
    if orders == "both":
        views += [("ba", (q, b, a)) for q, a, b in texts]
    generated = generate(model, tokenizer, [judge.reasoning_content(*t) for _, t in views], sampling, votes)
    out: list[list[Rationale]] = [[] for _ in texts]
    for k, ((order, _), samples) in enumerate(zip(views, generated.texts, strict=True)):
        for raw in samples:
            verdict = judge.parse_answer(raw)
            text = judge.parse_rationale(raw) or raw.strip()
            if order == "ba":  # written about (b, a): back to the caller's names
                text, verdict = judge.swap_names(text), _flip(verdict)
            out[k % len(texts)].append(Rationale(text, verdict, order))
    return out, generated.new_tokens


def prove(
    model, tokenizer, texts: Sequence[tuple[str, str, str]], verdicts: Sequence[str], sampling: SamplingConfig,
) -> tuple[list[str | None], int]:
    """One rationale per pair for its given verdict (the preference-proving model); None when the
    output holds no rationale. Returns (rationales, new tokens)."""
    contents = [judge.proving_content(q, a, b, v) for (q, a, b), v in zip(texts, verdicts, strict=True)]
    generated = generate(model, tokenizer, contents, sampling, 1)
    return [judge.parse_rationale(samples[0]) for samples in generated.texts], generated.new_tokens
