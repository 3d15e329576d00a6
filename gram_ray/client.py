"""Clients of the ``gram.v1.RewardComparator`` service.

    from gram_ray.client import GramClient
    with GramClient("127.0.0.1:50051") as client:
        client.compare_one("What is 2+2?", "4", "5")       # {"p_a_better": …, "p_ab": …, "p_ba": …}
        client.rank("Pick a colour", ["red", "blue", "green"], strategy="tournament")
        client.reward(["q"], ["response"], references=["greedy response"])

Every call has a deadline (``timeout_s``) and is retried with exponential backoff while the server
is ``UNAVAILABLE`` (starting, restarting, or a replica moving). :func:`grpo_reward_function` gives a
reward function with TRL's GRPO signature.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from gram_ray.judge import Prompt
from gram_ray.proto import gram_pb2 as pb
from gram_ray.proto import gram_pb2_grpc
from gram_ray.proto.enums import GROUP_SCORINGS, ORDERS, STRATEGIES

DEFAULT_ADDRESS = "127.0.0.1:50051"
"""Where ``serve_configs/gram.yaml`` binds the gRPC server."""

_MAX_MESSAGE = 64 * 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff 0.2, 0.4, … capped at 5 s: the default 12 attempts wait ~41 s in all, longer than Serve
    takes to restart a dead ingress replica (the gRPC server) on a live node. (8 attempts, ~16 s, was
    not always enough on a busy 2-core machine: a fresh-clone CI run saw calls in flight at the kill
    give up while the replica was still starting.)"""

    attempts: int = 12
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    retry_codes: tuple[grpc.StatusCode, ...] = (grpc.StatusCode.UNAVAILABLE,)

    def backoffs(self):
        delay = self.initial_backoff_s
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * self.multiplier, self.max_backoff_s)

    def next_delay(self, exc: Any, backoffs: Any) -> float | None:
        """Seconds to wait before retrying ``exc``, or None to give up: retry_codes back off
        exponentially; a server's push-back (``grpc-retry-pushback-ms``, e.g. a full queue) is
        honoured as the wait, whatever the code."""
        pushback = None
        for key, value in (exc.trailing_metadata() or ()):
            if key == "grpc-retry-pushback-ms":
                pushback = int(value) / 1000 if value.isdigit() else None
        if exc.code() not in self.retry_codes and pushback is None:
            return None
        delay = next(backoffs, None)
        return None if delay is None else max(delay, pushback or 0.0)


# ----------------------------------------------------------------------------------------------
# Requests and results
# ----------------------------------------------------------------------------------------------


def prompt_proto(prompt: Prompt) -> pb.Prompt:
    if isinstance(prompt, str):
        return pb.Prompt(text=prompt)
    messages = [pb.ChatMessage(role=m.get("role", "user"), content=m["content"]) for m in prompt]
    return pb.Prompt(conversation=pb.Conversation(messages=messages))


def compare_request(
    pairs: Sequence[tuple[Prompt, str, str]], orders: str = "both", reasoning: bool = False, votes: int = 0,
) -> pb.CompareRequest:
    return pb.CompareRequest(
        pairs=[pb.Pair(prompt=prompt_proto(p), response_a=a, response_b=b) for p, a, b in pairs],
        orders=ORDERS[orders], reasoning=reasoning, votes=votes,
    )


def rank_request(prompt: Prompt, responses: Sequence[str], strategy: str = "knockout", orders: str = "both") -> pb.RankRequest:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: unknown {strategy!r} ({', '.join(STRATEGIES)})")
    return pb.RankRequest(
        prompt=prompt_proto(prompt), responses=list(responses), strategy=STRATEGIES[strategy], orders=ORDERS[orders]
    )


def reward_request(
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    references: Sequence[str | None] | None = None,
    groups: Sequence[str] | None = None,
    orders: str = "both",
    group_scoring: str = "anchor",
) -> pb.RewardRequest:
    if len(prompts) != len(responses):
        raise ValueError(f"responses: {len(responses)} responses for {len(prompts)} prompts")
    items = []
    for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        item = pb.RewardItem(prompt=prompt_proto(prompt), response=response)
        if references is not None and references[i] is not None:
            item.reference = references[i]
        if groups is not None:
            item.group = groups[i]
        items.append(item)
    if group_scoring not in GROUP_SCORINGS:
        raise ValueError(f"group_scoring: unknown {group_scoring!r} ({', '.join(GROUP_SCORINGS)})")
    return pb.RewardRequest(items=items, orders=ORDERS[orders], group_scoring=GROUP_SCORINGS[group_scoring])


def pair_result_dict(result: pb.PairResult) -> dict[str, Any]:
    return {
        "p_a_better": result.p_a_better,
        "p_ab": result.p_ab,
        "p_ba": result.p_ba if result.HasField("p_ba") else None,
        "truncated": {
            "prompt": result.truncated.prompt,
            "response_a": result.truncated.response_a,
            "response_b": result.truncated.response_b,
        },
        **({"rationales": [{"verdict": r.verdict or None, "order": r.order, "text": r.text} for r in result.rationales],
            "unparsed": result.unparsed} if result.rationales else {}),
    }


def rank_result_dict(response: pb.RankResponse) -> dict[str, Any]:
    return {
        "ranking": list(response.ranking),
        "scores": list(response.scores),
        "best_index": response.best_index,
        "comparisons": response.comparisons,
    }


def health_dict(response: pb.HealthResponse) -> dict[str, Any]:
    return {field.name: value for field, value in response.ListFields()}


# ----------------------------------------------------------------------------------------------
# Clients
# ----------------------------------------------------------------------------------------------


TOKEN_ENV = "GRAM_RAY_AUTH_TOKEN"
"""Where clients (and, by default, the service) find the bearer token."""


def _auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    return (("authorization", f"Bearer {token}"),) if token else ()


def _channel(module: Any, address: str, tls_ca_file: str | None) -> Any:
    """A channel to ``address``: TLS when ``tls_ca_file`` (the CA or self-signed certificate to trust) is given."""
    options = [("grpc.max_send_message_length", _MAX_MESSAGE), ("grpc.max_receive_message_length", _MAX_MESSAGE)]
    if tls_ca_file is None:
        return module.insecure_channel(address, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca_file).read_bytes())
    return module.secure_channel(address, credentials, options=options)


class _Connection:
    """What both clients hold: the channel (TLS when ``tls_ca_file``), the stub, the bearer token's
    metadata, the per-call deadline and the retry policy."""

    _grpc: Any = grpc  # grpc, or grpc.aio for the asyncio client

    def __init__(
        self, address: str = DEFAULT_ADDRESS, timeout_s: float = 120.0, retry: RetryPolicy | None = None,
        token: str | None = None, tls_ca_file: str | None = None,
    ):
        self.address = address
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.metadata = _auth_metadata(token)
        self.channel = _channel(self._grpc, address, tls_ca_file)
        self.stub = gram_pb2_grpc.RewardComparatorStub(self.channel)


class GramClient(_Connection):
    """Blocking client. Thread-safe (gRPC channels are)."""

    def _call(self, method: Any, request: Any) -> Any:
        backoffs = self.retry.backoffs()
        while True:
            try:
                return method(request, timeout=self.timeout_s, metadata=self.metadata)
            except grpc.RpcError as exc:
                delay = self.retry.next_delay(exc, backoffs)
                if delay is None:
                    raise
                time.sleep(delay)

    def compare(
        self, pairs: Sequence[tuple[Prompt, str, str]], orders: str = "both", reasoning: bool = False, votes: int = 0,
    ) -> list[dict[str, Any]]:
        response = self._call(self.stub.Compare, compare_request(pairs, orders, reasoning, votes))
        return [pair_result_dict(r) for r in response.results]

    def compare_one(
        self, prompt: Prompt, response_a: str, response_b: str, orders: str = "both", reasoning: bool = False, votes: int = 0,
    ) -> dict[str, Any]:
        return self.compare([(prompt, response_a, response_b)], orders, reasoning, votes)[0]

    def rank(self, prompt: Prompt, responses: Sequence[str], strategy: str = "knockout", orders: str = "both") -> dict[str, Any]:
        return rank_result_dict(self._call(self.stub.Rank, rank_request(prompt, responses, strategy, orders)))

    def reward(self, prompts: Sequence[Prompt], responses: Sequence[str], references: Sequence[str | None] | None = None,
               groups: Sequence[str] | None = None, orders: str = "both", group_scoring: str = "anchor") -> list[float]:
        """Rewards (log-odds of beating the reference, or per ``group_scoring`` within groups)."""
        request = reward_request(prompts, responses, references, groups, orders, group_scoring)
        return list(self._call(self.stub.Reward, request).rewards)

    def health(self) -> dict[str, Any]:
        return health_dict(self._call(self.stub.Health, pb.HealthRequest()))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GramClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncGramClient(_Connection):
    """asyncio client (``grpc.aio``); create it inside a running event loop."""

    _grpc = grpc.aio

    async def _call(self, method: Any, request: Any) -> Any:
        backoffs = self.retry.backoffs()
        while True:
            try:
                return await method(request, timeout=self.timeout_s, metadata=self.metadata)
            except grpc.aio.AioRpcError as exc:
                delay = self.retry.next_delay(exc, backoffs)
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    async def compare(
        self, pairs: Sequence[tuple[Prompt, str, str]], orders: str = "both", reasoning: bool = False, votes: int = 0,
    ) -> list[dict[str, Any]]:
        response = await self._call(self.stub.Compare, compare_request(pairs, orders, reasoning, votes))
        return [pair_result_dict(r) for r in response.results]

    async def compare_one(
        self, prompt: Prompt, response_a: str, response_b: str, orders: str = "both", reasoning: bool = False, votes: int = 0,
    ) -> dict[str, Any]:
        return (await self.compare([(prompt, response_a, response_b)], orders, reasoning, votes))[0]

    async def rank(self, prompt: Prompt, responses: Sequence[str], strategy: str = "knockout", orders: str = "both") -> dict[str, Any]:
        return rank_result_dict(await self._call(self.stub.Rank, rank_request(prompt, responses, strategy, orders)))

    async def reward(self, prompts: Sequence[Prompt], responses: Sequence[str], references: Sequence[str | None] | None = None,
                     groups: Sequence[str] | None = None, orders: str = "both", group_scoring: str = "anchor") -> list[float]:
        request = reward_request(prompts, responses, references, groups, orders, group_scoring)
        return list((await self._call(self.stub.Reward, request)).rewards)

    async def health(self) -> dict[str, Any]:
        return health_dict(await self._call(self.stub.Health, pb.HealthRequest()))

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncGramClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


# ----------------------------------------------------------------------------------------------
# TRL
# ----------------------------------------------------------------------------------------------


def _completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    # Conversational format: a list of messages; the reward is for the assistant's reply.
    return "".join(m["content"] for m in completion if m.get("role", "assistant") == "assistant")


def _prompts_and_groups(prompts: Sequence[Any]) -> tuple[list[Prompt], list[str]]:
    """Trainer prompts (strings or chat messages) as ``Prompt`` values, and a group key per prompt:
    the completions of one prompt form one group."""
    values: list[Prompt] = [p if isinstance(p, str) else [dict(m) for m in p] for p in prompts]
    groups = [p if isinstance(p, str) else repr([tuple(sorted(m.items())) for m in p]) for p in values]
    return values, groups


def grpo_reward_function(
    address: str = DEFAULT_ADDRESS, group_scoring: str = "anchor", **client_kwargs: Any,
) -> Callable[..., list[float]]:
    """A reward function for TRL's ``GRPOTrainer(reward_funcs=[...])``.

    ``reward_fn(prompts, completions, **kwargs) -> list[float]``: the log-odds that each completion
    beats its reference. A dataset column ``reference`` (e.g. the policy's greedy response) is used
    when present; otherwise the completions of each prompt (a GRPO group) are scored within the
    group by ``group_scoring``: ``anchor`` (each against the group's first, whose reward is 0; n-1
    comparisons, the cheapest: GRPO normalises rewards within the group anyway), ``circular`` (each
    against the next; n) or ``all_pairs`` (Bradley-Terry strengths from all n(n-1)/2 comparisons).
    """
    if group_scoring not in GROUP_SCORINGS:
        raise ValueError(f"group_scoring: unknown {group_scoring!r} ({', '.join(GROUP_SCORINGS)})")
    client = GramClient(address, **client_kwargs)

    def gram_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        references = kwargs.get("reference")
        prompt_values, groups = _prompts_and_groups(prompts)
        return client.reward(
            prompt_values,
            [_completion_text(c) for c in completions],
            references=list(references) if references is not None else None,
            groups=groups,
            group_scoring=group_scoring,
        )

    gram_reward.client = client  # type: ignore[attr-defined]
    return gram_reward


def verl_reward_function(
    address: str = DEFAULT_ADDRESS, group_scoring: str = "anchor", **client_kwargs: Any,
) -> Callable[..., list[float]]:
    """A batch reward function for verl's ``BatchRewardManager`` (``reward_model.reward_manager=batch``).

    ``compute_score(data_sources, solution_strs, ground_truths, extra_infos, **kwargs) -> list[float]``,
    the keyword call verl makes (verl 0.9 ``verl/workers/reward_manager/batch.py``). verl passes the
    decoded response but not the prompt, so each row's question is read from ``extra_info["question"]``
    (or ``"prompt"``: a string or chat messages), as verl's own data preprocessing stores it. A row with a
    ``ground_truth`` is scored against it as the reference (log-odds that the response beats it); rows
    without one are scored within their question's group by ``group_scoring``, as in ``grpo_reward_function``.
    """
    if group_scoring not in GROUP_SCORINGS:
        raise ValueError(f"group_scoring: unknown {group_scoring!r} ({', '.join(GROUP_SCORINGS)})")
    client = GramClient(address, **client_kwargs)

    def compute_score(data_sources: Sequence[Any], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                      extra_infos: Sequence[Any], **kwargs: Any) -> list[float]:
        if not len(solution_strs) == len(ground_truths) == len(extra_infos):
            raise ValueError(f"solution_strs, ground_truths, extra_infos: lengths {len(solution_strs)}, "
                             f"{len(ground_truths)}, {len(extra_infos)} differ")
        questions = []
        for i, info in enumerate(extra_infos):
            question = (info or {}).get("question", (info or {}).get("prompt"))
            if not question:
                raise ValueError(f"extra_infos[{i}]: needs 'question' (or 'prompt'): verl does not pass the prompt "
                                 "to a reward function, so put it in extra_info when preparing the data")
            questions.append(question)
        prompts, groups = _prompts_and_groups(questions)
        references = [str(g) if g not in (None, "") else None for g in ground_truths]
        return client.reward(prompts, [str(s) for s in solution_strs], references=references, groups=groups,
                             group_scoring=group_scoring)

    compute_score.client = client  # type: ignore[attr-defined]
    return compute_score


_VERL_FUNCTIONS: dict[tuple[str, str], Callable[..., list[float]]] = {}


def verl_compute_score(data_sources: Sequence[Any], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                       extra_infos: Sequence[Any], address: str = DEFAULT_ADDRESS, group_scoring: str = "anchor",
                       **kwargs: Any) -> list[float]:
    """``verl_reward_function`` as the module-level function verl's config names:
    ``reward_model.reward_manager=batch custom_reward_function.path=<this file>
    custom_reward_function.name=verl_compute_score`` (``+custom_reward_function.reward_kwargs.address=HOST:PORT``).
    The token comes from ``GRAM_RAY_AUTH_TOKEN``, as for every client."""
    key = (address, group_scoring)
    if key not in _VERL_FUNCTIONS:
        _VERL_FUNCTIONS[key] = verl_reward_function(address, group_scoring)
    return _VERL_FUNCTIONS[key](data_sources, solution_strs, ground_truths, extra_infos)
