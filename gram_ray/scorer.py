"""The GRAM scorer: ``p(A better)`` for a batch of (prompt, response_a, response_b).

How it stays fast without changing the answer:

* Only the last position goes through the head, and only the two verdict rows of the lm_head
  (see :mod:`gram_ray.head`); no full-vocabulary logits are ever materialized.
* Sequences (each pair in each order) are sorted by length and packed under a token budget
  (``max_batch_tokens`` counts padded tokens), so padding is small; results return in input order.
  Right padding keeps every real token at its true position, so batched equals one-at-a-time.
* The judge instruction (and the chat template's system turn) is the same for every sequence: its
  key/value cache is computed once and shared by every batch (``share_prefix``), so each sequence
  only runs its own question and answers through the model.
* bf16 where the device supports it, flash-attention 2 on CUDA when installed, else SDPA.

Truncation keeps the beginning of the question and of each response at a token budget; it is
counted per pair and in :attr:`GramScorer.stats`, and never drops an example.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gram_ray import judge, kv_cache
from gram_ray.encoding import (
    Truncation,
    encode_response,
    encode_verdict,
    pack_batches,
    right_pad,
    truncate_pairs,
    truncate_texts,
)
from gram_ray.head import (
    decoder_of,
    is_scalar_head,
    last_token_hidden,
    scalar_rewards,
    unwrap,
    verdict_logits,
    verdict_rows,
)
from gram_ray.judge import Orders, Pair, VerdictTokens
from gram_ray.models import (
    Dtype,
    ModelSource,
    load_causal_lm,
    load_tokenizer,
    resolve_attn_implementation,
    resolve_device,
    resolve_dtype,
    resolve_model,
    saved_calibration,
    trained_budgets,
)
from gram_ray.reasoning import Rationale, SamplingConfig, judge_with_reasoning

logger = logging.getLogger(__name__)

def renamed_fields(renames: dict[str, str]):
    """A ``model_validator(mode="before")`` that rejects an old key with a message naming its new one."""
    def check(cls: Any, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in renames.items():
                if old in data:
                    raise ValueError(f"{old} was renamed {new}")
        return data
    return check


DEFAULT_BATCH_TOKENS = {"cuda": 16384, "cpu": 2048}
"""Padded tokens per forward pass by device type, unless ``max_batch_tokens`` is set."""

DEFAULT_MAX_TOKENS = 1024
"""Token budget per question and per response for a model with no gram-ray training record."""


class ScorerConfig(BaseModel):
    """How a scorer loads its model and batches its work."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("default", description="model spec: default, smollm2-135m, a directory, a .gguf file or a hub id")
    dtype: Dtype = Field("auto", description="auto = bf16 on CUDA / bf16-capable CPUs, else fp32")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    device_map: str | None = Field(None, description="e.g. 'auto' to spread one replica over all visible GPUs")
    attn_implementation: str = Field("auto", description="auto = flash_attention_2 on CUDA if installed, else sdpa")
    trust_remote_code: bool = Field(False, description="allow custom model code from a hub repo")
    max_prompt_tokens: int | None = Field(
        None, gt=0, description="question budget (longer questions keep their start); unset = the budget the model "
        f"was trained at (its gram_training.json), else {DEFAULT_MAX_TOKENS}",
    )
    max_response_tokens: int | None = Field(
        None, gt=0, description="per-response budget (longer responses keep their start); unset = the budget the "
        f"model was trained at (its gram_training.json), else {DEFAULT_MAX_TOKENS}",
    )
    max_batch_tokens: int | None = Field(
        None, gt=0, description="padded tokens per forward pass; unset = "
        f"{DEFAULT_BATCH_TOKENS['cuda']} on CUDA, {DEFAULT_BATCH_TOKENS['cpu']} on CPU"
    )
    max_batch_sequences: int = Field(64, gt=0, description="sequences (a pair is two) per forward pass")
    orders: Orders = Field("both", description="both = judge both orders and average (cancels position bias); ab = A first only")
    share_prefix: bool = Field(True, description="compute the judge instruction's KV cache once")
    calibrated: bool = Field(
        True, description="apply the model's calibration.json (its position bias and temperature, fitted by "
        "gram-ray calibrate) when it has one; false = the raw verdict token probabilities",
    )

    _renamed = model_validator(mode="before")(renamed_fields({"max_batch_size": "max_batch_sequences"}))


@dataclass(frozen=True)
class PairScore:
    p_a_better: float
    p_ab: float
    p_ba: float | None
    truncated: Truncation = field(default_factory=Truncation)
    rationales: list[Rationale] = field(default_factory=list)  # reasoning mode only
    unparsed: int = 0  # reasoning outputs with no readable verdict

    def as_dict(self) -> dict[str, Any]:
        out = {
            "p_a_better": self.p_a_better,
            "p_ab": self.p_ab,
            "p_ba": self.p_ba,
            "truncated": {k: getattr(self.truncated, k) for k in ("prompt", "response_a", "response_b")},
        }
        if self.rationales:
            out["rationales"] = [{"verdict": r.verdict, "order": r.order, "text": r.text} for r in self.rationales]
            out["unparsed"] = self.unparsed
        return out


@dataclass
class ScorerStats:
    pairs: int = 0
    sequences: int = 0
    batches: int = 0
    padded_tokens: int = 0
    real_tokens: int = 0
    truncated_prompts: int = 0
    truncated_responses: int = 0
    generated_tokens: int = 0  # reasoning mode
    unparsed: int = 0  # reasoning outputs with no readable verdict


def prefix_sharing_supported(model: Any) -> bool:
    """Whether a shared-prefix key/value cache gives the same result as the full sequence."""
    config = getattr(model, "config", None)
    layer_types = getattr(config, "layer_types", None) or []
    # Sliding-window layers keep only part of a long cache; stay on the plain path for them.
    return not (getattr(config, "use_sliding_window", False) or any("sliding" in t for t in layer_types))


class GramScorer:
    """Scores pairs with a generative reward model. Thread-compatible, not thread-safe."""

    def __init__(self, model: Any, tokenizer: Any, config: ScorerConfig | None = None, source: ModelSource | None = None):
        # A judge is served at the budgets it was trained at unless told otherwise: beyond them a
        # verdict head follows position rather than content (MODEL_CARD.md).
        config = config or ScorerConfig()
        trained = trained_budgets(source) if source is not None else {}
        self.config = config.model_copy(update={
            key: trained.get(key, DEFAULT_MAX_TOKENS)
            for key in ("max_prompt_tokens", "max_response_tokens") if getattr(config, key) is None
        })
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        self.tokens = VerdictTokens.from_tokenizer(tokenizer)
        self.calibration = saved_calibration(source) if source is not None and config.calibrated else judge.Calibration()
        self.stats = ScorerStats()
        # A scalar reward model (the Bradley-Terry baseline) scores each response on its own and
        # compares rewards; a generative judge reads the verdict of the pair.
        self.scalar = is_scalar_head(model)
        self._add_special = not judge.uses_chat_template(tokenizer)
        self._prefix_ids: list[int] = []
        self._prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if self.scalar:
            inner = unwrap(model)
            self._decoder = getattr(inner, inner.base_model_prefix)
            return
        self._decoder = decoder_of(model)
        weight, bias = verdict_rows(model, self.tokens.ids)
        # Detached fp32 copies: scoring never needs gradients, and fp32 keeps the margin exact.
        self._weight = weight.detach().float().clone()
        self._bias = None if bias is None else bias.detach().float().clone()
        if self.config.share_prefix and self._prefix_sharing_supported():
            self._prefix_ids = judge.verdict_prefix_ids(tokenizer)

    @classmethod
    def from_config(cls, config: ScorerConfig) -> GramScorer:
        source = resolve_model(config.model)
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
        model = load_causal_lm(
            source,
            dtype=dtype,
            device=None if config.device_map else device,
            attn_implementation=resolve_attn_implementation(config.attn_implementation, device, dtype),
            device_map=config.device_map,
            trust_remote_code=config.trust_remote_code,
        )
        tokenizer = load_tokenizer(source, trust_remote_code=config.trust_remote_code)
        return cls(model, tokenizer, config, source)

    # ------------------------------------------------------------------------------------------
    # Public API
    # ------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        described = self.source.describe() if self.source else {"spec": None}
        return {
            **described,
            "head": "scalar (Bradley-Terry)" if self.scalar else "generative verdict",
            "verdict_tokens": {"A": self.tokens.a, "B": self.tokens.b},
            "max_prompt_tokens": self.config.max_prompt_tokens,
            "max_response_tokens": self.config.max_response_tokens,
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "device": str(self.input_device),
            "shared_prefix_tokens": len(self._prefix_ids),
            "max_batch_tokens": self.max_batch_tokens,
            "calibration": self.calibration.as_dict(),
        }

    @property
    def input_device(self) -> torch.device:
        return self._decoder.get_input_embeddings().weight.device

    @torch.inference_mode()
    def score(self, pairs: Sequence[Pair], orders: Orders | None = None) -> list[PairScore]:
        """Score ``pairs``; results are in input order."""
        orders = orders or self.config.orders
        if orders not in judge.ORDERS:
            raise ValueError(f"orders: unknown value {orders!r} (both, ab)")
        if not pairs:
            return []
        texts, truncations = self.truncate_pairs(pairs)
        return self._score_texts(texts, truncations, orders)

    def _score_texts(self, texts: list[tuple[str, str, str]], truncations: list[Truncation], orders: str) -> list[PairScore]:
        if self.scalar:
            return self._score_scalar(texts, truncations, orders)
        sequences: list[list[int]] = []
        for question, a, b in texts:
            sequences.append(self._encode(question, a, b))
            if orders == "both":
                sequences.append(self._encode(question, b, a))
        p_first = self.verdict_probabilities(sequences)
        results = []
        step = 2 if orders == "both" else 1
        for i, truncation in enumerate(truncations):
            p_ab = p_first[step * i]
            p_ba = 1.0 - p_first[step * i + 1] if orders == "both" else None
            results.append(PairScore(judge.combine_orders(p_ab, p_ba), p_ab, p_ba, truncation))
        self.stats.pairs += len(texts)
        return results

    def score_reasoning(
        self, pairs: Sequence[Pair], votes: int = 1, orders: Orders | None = None, sampling: SamplingConfig | None = None,
    ) -> list[PairScore]:
        """GRAM-R²: ``votes`` sampled rationales per order, majority vote. ``p_a_better`` is the share
        of readable verdicts for A (``p_ab``/``p_ba``: the share within each order); with no
        majority the verdict-token probability decides. Unreadable outputs are counted, never fatal."""
        orders = orders or self.config.orders
        if orders not in judge.ORDERS:
            raise ValueError(f"orders: unknown value {orders!r} (both, ab)")
        if votes < 1:
            raise ValueError(f"votes: must be >= 1, got {votes}")
        if self.scalar:
            raise ValueError("reasoning: a scalar (Bradley-Terry) model cannot write rationales")
        if not pairs:
            return []
        texts, truncations = self.truncate_pairs(pairs)
        with torch.inference_mode():
            # The tie-breaker; one forward pass per order, small next to generation.
            token_scores = self._score_texts(texts, truncations, orders)
            rationales, new_tokens = judge_with_reasoning(
                self.model, self.tokenizer, texts, votes, orders, sampling or SamplingConfig()
            )
        results = []
        for token_score, written in zip(token_scores, rationales, strict=True):
            overall = judge.majority_vote([r.verdict for r in written], token_score.p_a_better)
            p_ab = judge.majority_vote([r.verdict for r in written if r.order == "ab"], token_score.p_ab).p_a_better
            p_ba = None
            if orders == "both":
                p_ba = judge.majority_vote([r.verdict for r in written if r.order == "ba"], token_score.p_ba).p_a_better
            results.append(PairScore(overall.p_a_better, p_ab, p_ba, token_score.truncated, written, overall.unparsed))
        self.stats.generated_tokens += new_tokens
        self.stats.unparsed += sum(r.unparsed for r in results)
        return results

    def _score_scalar(self, texts: list[tuple[str, str, str]], truncations: list[Truncation], orders: str) -> list[PairScore]:
        """Bradley-Terry: p(A better) = σ(r_A - r_B); position plays no role, so both orders agree."""
        sequences = [encode_response(self.tokenizer, q, a) for q, a, _ in texts]
        sequences += [encode_response(self.tokenizer, q, b) for q, _, b in texts]
        rewards = self.rewards(sequences)
        n = len(texts)
        results = []
        for i, truncation in enumerate(truncations):
            p = float(torch.sigmoid(rewards[i] - rewards[n + i]))
            results.append(PairScore(p, p, p if orders == "both" else None, truncation))
        self.stats.pairs += n
        return results

    @torch.inference_mode()
    def rewards(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """``[N]`` scalar rewards of a sequence-classification model, in input order."""
        out = torch.empty(len(sequences), dtype=torch.float32)
        for batch in pack_batches([len(s) for s in sequences], self.max_batch_tokens, self.config.max_batch_sequences):
            ids, mask, lengths = right_pad([list(sequences[i]) for i in batch], self.tokenizer.pad_token_id)
            device = self.input_device
            out[torch.tensor(batch)] = scalar_rewards(self.model, ids.to(device), mask.to(device), lengths.to(device)).cpu()
            self.stats.batches += 1
        self.stats.sequences += len(sequences)
        return out

    def verdict_probabilities(self, sequences: Sequence[Sequence[int]]) -> list[float]:
        """P("A") over {"A", "B"} at the end of each token sequence, in input order, through the
        model's calibration (the identity for a model without one: the softmax over the two tokens)."""
        logits = self.verdict_logits(sequences)
        return [self.calibration.p_first_better(m) for m in (logits[:, 0] - logits[:, 1]).tolist()]

    @torch.inference_mode()
    def verdict_logits(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """``[N, 2]`` fp32 logits of "A" and "B" after each sequence, in input order."""
        out = torch.empty(len(sequences), 2, dtype=torch.float32)
        use_prefix = [self._has_prefix(s) for s in sequences]
        for with_prefix in (True, False):
            idx = [i for i, u in enumerate(use_prefix) if u == with_prefix]
            if not idx:
                continue
            skip = len(self._prefix_ids) if with_prefix else 0
            rows = [list(sequences[i][skip:]) for i in idx]
            for batch in pack_batches([len(r) for r in rows], self._token_budget(skip), self.config.max_batch_sequences):
                logits = self._forward([rows[j] for j in batch], with_prefix)
                out[torch.tensor([idx[j] for j in batch])] = logits.cpu()
        self.stats.sequences += len(sequences)
        return out

    # ------------------------------------------------------------------------------------------
    # Encoding
    # ------------------------------------------------------------------------------------------

    def truncate_pairs(self, pairs: Sequence[Pair]) -> tuple[list[tuple[str, str, str]], list[Truncation]]:
        texts, truncations = truncate_pairs(self.tokenizer, pairs, self.config.max_prompt_tokens, self.config.max_response_tokens)
        self.stats.truncated_prompts += sum(t.prompt for t in truncations)
        self.stats.truncated_responses += sum(t.response_a + t.response_b for t in truncations)
        return texts, truncations

    def truncate_texts(self, texts: list[str], max_tokens: int) -> tuple[list[str], list[bool]]:
        return truncate_texts(self.tokenizer, texts, max_tokens)

    def _encode(self, question: str, response_a: str, response_b: str) -> list[int]:
        return encode_verdict(self.tokenizer, question, response_a, response_b)

    def encode(self, pair: Pair, order: str = "ab") -> list[int]:
        """Token ids of one pair's verdict prompt in one order (``ab`` or ``ba``), untruncated."""
        question = judge.render_question(pair.prompt)
        if order == "ab":
            return self._encode(question, pair.response_a, pair.response_b)
        return self._encode(question, pair.response_b, pair.response_a)

    # ------------------------------------------------------------------------------------------
    # Shared prefix
    # ------------------------------------------------------------------------------------------

    def _prefix_sharing_supported(self) -> bool:
        return prefix_sharing_supported(self.model)

    def _has_prefix(self, ids: Sequence[int]) -> bool:
        p = len(self._prefix_ids)
        return p > 0 and len(ids) > p and list(ids[:p]) == self._prefix_ids

    @property
    def max_batch_tokens(self) -> int:
        if self.config.max_batch_tokens is not None:
            return self.config.max_batch_tokens
        # On a CPU the matmuls are already large at one sequence, and padding plus masked attention
        # make wide batches slower (measured: 2 sequences of ~700 tokens per batch beat 8); a GPU
        # wants wide batches to fill its cores.
        return DEFAULT_BATCH_TOKENS["cuda" if self.input_device.type == "cuda" else "cpu"]

    def _token_budget(self, prefix_len: int) -> int:
        # Attention over the shared prefix still costs per sequence: count it against the budget.
        return max(self.max_batch_tokens - prefix_len, 1)

    def _prefix_cache(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self._prefix_kv is None:
            ids = torch.tensor([self._prefix_ids], device=self.input_device)
            self._prefix_kv = kv_cache.key_values(kv_cache.returned(self._decoder(input_ids=ids, use_cache=True)))
        return self._prefix_kv

    # ------------------------------------------------------------------------------------------
    # Forward
    # ------------------------------------------------------------------------------------------

    def _forward(self, rows: list[list[int]], with_prefix: bool) -> torch.Tensor:
        device = self.input_device
        input_ids, mask, lengths = right_pad(rows, self.tokenizer.pad_token_id)
        width = input_ids.shape[1]
        kwargs: dict[str, Any] = {}
        if with_prefix:
            p = len(self._prefix_ids)
            kwargs.update(kv_cache.argument(kv_cache.broadcast(self._prefix_cache(), len(rows), self.model.config)))
            kwargs["position_ids"] = (torch.arange(width) + p).unsqueeze(0).expand(len(rows), -1).to(device)
            mask = torch.cat([torch.ones((len(rows), p), dtype=torch.long), mask], dim=1)
        hidden = self._decoder(
            input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=with_prefix, **kwargs
        ).last_hidden_state
        self.stats.batches += 1
        self.stats.padded_tokens += len(rows) * width
        self.stats.real_tokens += int(lengths.sum())
        return verdict_logits(last_token_hidden(hidden, lengths), self._weight, self._bias, self.model.config)
