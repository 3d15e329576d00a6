"""The comparator's logic, independent of transport: validate a request, split it into pair
comparisons, score them through an async ``score_pairs`` callable, assemble the answer.

The gRPC servicer (:mod:`gram_ray.serve.ingress`) and the OpenRLHF HTTP route call this; the
scorer deployment (through a handle) or an offline :class:`~gram_ray.scorer.GramScorer` provides
``score_pairs``. Bad input raises :class:`RequestError` with a gRPC status code and a message that
names the field, e.g. ``pairs[2].response_b: empty``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from gram_ray import __version__, judge, ranking
from gram_ray.judge import Pair, Prompt
from gram_ray.proto import gram_pb2 as pb
from gram_ray.proto.enums import (
    DEFAULT_GROUP_SCORING,
    DEFAULT_STRATEGY,
    GROUP_SCORING_NAMES,
    ORDER_NAMES,
    STRATEGY_NAMES,
)
from gram_ray.scorer import PairScore
from gram_ray.serve.config import LimitsConfig, ReasoningConfig

ScorePairs = Callable[[Sequence[Pair], str], Awaitable[Sequence[PairScore]]]
ReasonPairs = Callable[[Sequence[Pair], str, int], Awaitable[Sequence[PairScore]]]  # (pairs, orders, votes)



class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(field: str, problem: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {problem}")


def too_large(field: str, problem: str) -> RequestError:
    return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{field}: {problem}")


@dataclass
class ComparatorService:
    score_pairs: ScorePairs
    model_info: dict[str, Any]
    limits: LimitsConfig
    default_orders: str = "both"
    reason_pairs: ReasonPairs | None = None  # None: reasoning requests get UNIMPLEMENTED
    reasoning: ReasoningConfig = field(default_factory=ReasoningConfig)

    # ------------------------------------------------------------------------------------------
    # Validation helpers
    # ------------------------------------------------------------------------------------------

    def _text(self, value: str, field: str) -> str:
        if not value.strip():
            raise invalid(field, "empty")
        if len(value) > self.limits.max_text_chars:
            raise too_large(field, f"{len(value)} characters, over the limit of {self.limits.max_text_chars}")
        return value

    def _prompt(self, prompt: pb.Prompt, field: str) -> Prompt:
        kind = prompt.WhichOneof("kind")
        if kind is None:
            raise invalid(field, "missing (set text or conversation)")
        if kind == "text":
            return self._text(prompt.text, f"{field}.text")
        messages = []
        for i, m in enumerate(prompt.conversation.messages):
            role = m.role or "user"
            if role not in judge.ROLES:
                raise invalid(f"{field}.conversation.messages[{i}].role", f"unknown role {role!r} (user, assistant, system)")
            messages.append({"role": role, "content": self._text(m.content, f"{field}.conversation.messages[{i}].content")})
        if not messages:
            raise invalid(f"{field}.conversation.messages", "empty")
        return messages

    def _orders(self, value: int, field: str = "orders") -> str:
        return self._enum(value, ORDER_NAMES, self.default_orders, field)

    @staticmethod
    def _enum(value: int, names: dict[int, str], default: str, field: str) -> str:
        """An API enum as its name: UNSPECIFIED (0) is ``default``; an unknown value is INVALID_ARGUMENT."""
        if value == 0:
            return default
        if value not in names:
            raise invalid(field, f"unknown value {value} ({', '.join(names.values())})")
        return names[value]

    def _count(self, n: int, limit: int, field: str) -> None:
        if n == 0:
            raise invalid(field, "empty")
        if n > limit:
            raise too_large(field, f"{n} items, over the limit of {limit}")

    def _votes(self, reasoning: bool, votes: int) -> int:
        if votes < 0:
            raise invalid("votes", f"must be >= 0, got {votes}")
        if not reasoning:
            if votes > 0:
                raise invalid("votes", "only used with reasoning=true")
            return 0
        if self.reason_pairs is None:
            raise RequestError(
                grpc.StatusCode.UNIMPLEMENTED,
                "reasoning: not enabled on this server (set reasoning.enabled in the serve config, with a GRAM-R² model)",
            )
        if votes > self.reasoning.max_votes:
            raise too_large("votes", f"{votes}, over the limit of {self.reasoning.max_votes}")
        return max(votes, 1)

    # ------------------------------------------------------------------------------------------
    # RPCs
    # ------------------------------------------------------------------------------------------

    async def compare(self, request: pb.CompareRequest) -> pb.CompareResponse:
        self._count(len(request.pairs), self.limits.max_pairs_per_request, "pairs")
        orders = self._orders(request.orders)
        votes = self._votes(request.reasoning, request.votes)
        pairs = [
            Pair(
                self._prompt(p.prompt, f"pairs[{i}].prompt"),
                self._text(p.response_a, f"pairs[{i}].response_a"),
                self._text(p.response_b, f"pairs[{i}].response_b"),
            )
            for i, p in enumerate(request.pairs)
        ]
        if votes:
            results = await self.reason_pairs(pairs, orders, votes)
        else:
            results = await self.score_pairs(pairs, orders)
        return pb.CompareResponse(results=[_pair_result(r) for r in results])

    async def rank(self, request: pb.RankRequest) -> pb.RankResponse:
        prompt = self._prompt(request.prompt, "prompt")
        n = len(request.responses)
        if n < 2:
            raise invalid("responses", f"need at least 2 responses to rank, got {n}")
        if n > self.limits.max_rank_responses:
            raise too_large("responses", f"{n} responses, over the limit of {self.limits.max_rank_responses}")
        responses = [self._text(r, f"responses[{i}]") for i, r in enumerate(request.responses)]
        strategy = self._enum(request.strategy, STRATEGY_NAMES, DEFAULT_STRATEGY, "strategy")
        orders = self._orders(request.orders)

        async def compare(indices: list[tuple[int, int]]) -> list[float]:
            pairs = [Pair(prompt, responses[i], responses[j]) for i, j in indices]
            return [r.p_a_better for r in await self.score_pairs(pairs, orders)]

        result = await ranking.rank(n, compare, strategy)
        return pb.RankResponse(
            ranking=result.ranking, scores=result.scores, best_index=result.best_index, comparisons=result.comparisons
        )

    async def reward(self, request: pb.RewardRequest) -> pb.RewardResponse:
        self._count(len(request.items), self.limits.max_reward_items, "items")
        orders = self._orders(request.orders)
        scoring = self._enum(request.group_scoring, GROUP_SCORING_NAMES, DEFAULT_GROUP_SCORING, "group_scoring")
        pairs: list[Pair] = []
        slots: list[tuple[int, int | None]] = []  # per pair: (item, the group member it was judged against)
        groups: dict[str, list[int]] = {}
        prompts: list[Prompt] = []
        for i, item in enumerate(request.items):
            prompt = self._prompt(item.prompt, f"items[{i}].prompt")
            response = self._text(item.response, f"items[{i}].response")
            prompts.append(prompt)
            if item.HasField("reference"):
                pairs.append(Pair(prompt, response, self._text(item.reference, f"items[{i}].reference")))
                slots.append((i, None))
            else:
                groups.setdefault(item.group or judge.render_question(prompt), []).append(i)
        for members in groups.values():
            for i, j in group_comparisons(len(members), scoring):
                a, b = members[i], members[j]
                pairs.append(Pair(prompts[a], request.items[a].response, request.items[b].response))
                slots.append((a, b))
        if len(pairs) > self.limits.max_pairs_per_request:
            raise too_large("items", f"{len(pairs)} comparisons ({scoring}), over the limit of {self.limits.max_pairs_per_request}")
        scores = [r.p_a_better for r in await self.score_pairs(pairs, orders)] if pairs else []
        rewards = [0.0] * len(request.items)
        p_better = [0.5] * len(request.items)
        outcomes: list[tuple[int, int, float]] = []  # all_pairs: (item, item, p) within groups
        for (a, b), p in zip(slots, scores, strict=True):
            if b is not None and scoring == "all_pairs":
                outcomes.append((a, b, p))
            else:
                rewards[a], p_better[a] = judge.log_odds(p), p
        if scoring == "all_pairs":
            for members in groups.values():
                index = {item: k for k, item in enumerate(members)}
                mine = [(index[a], index[b], p) for a, b, p in outcomes if a in index]
                strengths = ranking.fit_bradley_terry(len(members), [(x, y) for x, y, _ in mine], [p for _, _, p in mine])
                mean = sum(strengths) / len(strengths)
                for item, strength in zip(members, strengths, strict=True):
                    rewards[item] = strength - mean
                    p_better[item] = 1.0 / (1.0 + math.exp(-(strength - mean)))
        return pb.RewardResponse(rewards=rewards, p_better=p_better, comparisons=len(pairs))

    def health(self) -> pb.HealthResponse:
        info = self.model_info
        return pb.HealthResponse(
            status="SERVING",
            model=str(info.get("spec") or ""),
            backbone=str(info.get("backbone") or ""),
            adapter=str(info.get("adapter") or ""),
            verdict_token_a=judge.VERDICTS[0],
            verdict_token_b=judge.VERDICTS[1],
            max_prompt_tokens=int(info.get("max_prompt_tokens", 0)),
            max_response_tokens=int(info.get("max_response_tokens", 0)),
            max_pairs_per_request=self.limits.max_pairs_per_request,
            version=__version__,
        )


def group_comparisons(n: int, scoring: str) -> list[tuple[int, int]]:
    """The (member, judged-against) pairs a group of ``n`` needs: ``anchor`` n-1 (each against the
    first, which gets reward 0), ``circular`` n (each against the next), ``all_pairs`` n(n-1)/2."""
    if n < 2:
        return []
    if scoring == "anchor":
        return [(i, 0) for i in range(1, n)]
    if scoring == "circular":
        return [(i, (i + 1) % n) for i in range(n)]
    if scoring == "all_pairs":
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    raise ValueError(f"group_scoring: unknown {scoring!r} (anchor, circular, all_pairs)")


def _pair_result(score: PairScore) -> pb.PairResult:
    result = pb.PairResult(
        p_a_better=score.p_a_better,
        p_ab=score.p_ab,
        truncated=pb.Truncation(
            prompt=score.truncated.prompt, response_a=score.truncated.response_a, response_b=score.truncated.response_b
        ),
    )
    if score.p_ba is not None:
        result.p_ba = score.p_ba
    for r in score.rationales:
        result.rationales.add(text=r.text, verdict=r.verdict or "", order=r.order)
    result.unparsed = score.unparsed
    return result
