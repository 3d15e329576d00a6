"""The ingress deployment: the gRPC ``gram.v1.RewardComparator`` server and an HTTP route.

Each replica runs a ``grpc.aio`` server on the replica's own event loop, bound to
``grpc.host:grpc.port`` (127.0.0.1 by default). gram-ray binds the server itself because Ray Serve's
gRPC proxy always listens on every interface (``[::]``) and has no host setting; a reward model
should not be reachable from the network unless its operator asks for it. Several ingress replicas
on one node share the port (SO_REUSEPORT). Pair comparisons go to the scorer deployment through a
deployment handle, where ``@serve.batch`` merges them across requests.

HTTP (through Serve's HTTP proxy, ``http_options`` in the config): ``POST /get_reward`` is
compatible with OpenRLHF's remote reward model; ``GET /health`` returns the model info.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from gram_ray.judge import Pair
from gram_ray.policy_chat import PolicyTemplate
from gram_ray.proto import gram_pb2 as pb
from gram_ray.proto import gram_pb2_grpc
from gram_ray.proto.enums import GROUP_SCORINGS
from gram_ray.scorer import PairScore
from gram_ray.serve import auth
from gram_ray.serve.config import AppConfig, OpenRLHFConfig
from gram_ray.serve.scorer_deployment import DeadlineExpired, PairJob
from gram_ray.serve.service import ComparatorService, RequestError

logger = logging.getLogger(__name__)


class _Servicer(gram_pb2_grpc.RewardComparatorServicer):
    """Maps RPCs onto the service; bad input becomes a status, never a crash."""

    def __init__(self, service: ComparatorService):
        self.service = service

    async def _run(self, context: grpc.aio.ServicerContext, call: Any) -> Any:
        remaining = context.time_remaining()
        _DEADLINE.set(time.monotonic() + remaining if remaining is not None else None)
        try:
            return await call
        except RequestError as exc:
            await context.abort(exc.code, exc.message)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except BackPressureError:
            # The judge's queue is full: push back, and say when to retry (clients honour it).
            context.set_trailing_metadata((("grpc-retry-pushback-ms", str(PUSHBACK_MS)),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "the judge's queue is full; retry later")
        except DeadlineExpired as exc:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
        except RETRYABLE as exc:
            # Scoring is idempotent: _score_pairs already retried within the caller's deadline.
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"no judge replica answered in time ({type(exc).__name__}); retry")
        except Exception as exc:  # a bug: report it, keep serving
            logger.exception("request failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    async def Compare(self, request, context):
        return await self._run(context, self.service.compare(request))

    async def Rank(self, request, context):
        return await self._run(context, self.service.rank(request))

    async def Reward(self, request, context):
        return await self._run(context, self.service.reward(request))

    async def Health(self, request, context):
        return self.service.health()


RETRYABLE = (RayActorError, ActorUnavailableError, ReplicaUnavailableError, DeploymentUnavailableError)
"""What a judge replica dying or restarting looks like to the ingress (never the request's fault)."""
RETRY_WINDOW_S = 120.0  # how long a call without a deadline (HTTP) keeps retrying
PUSHBACK_MS = 500
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("gram_deadline", default=None)


async def retrying(call: Callable[[], Awaitable[Any]]) -> Any:
    """``call()`` again, with backoff, while the replica it reached is dead or restarting, until the
    caller's deadline (gRPC) or ``RETRY_WINDOW_S``. Scoring has no side effects, so a retried pair
    gets the same verdict; the caller sees an error only when time has run out, and then UNAVAILABLE."""
    deadline = _DEADLINE.get() or time.monotonic() + RETRY_WINDOW_S
    delay = 0.2
    while True:
        try:
            return await call()
        except RETRYABLE as exc:
            if time.monotonic() + delay >= deadline:
                raise
            logger.warning("judge replica unavailable (%s); retrying in %.1f s", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def caller_deadline() -> float | None:
    """The gRPC caller's deadline as epoch seconds (comparable on the judge's node), or None."""
    deadline = _DEADLINE.get()
    return None if deadline is None else time.time() + (deadline - time.monotonic())


def _bind_address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


@serve.deployment(name="RewardComparator", max_ongoing_requests=256)
class ComparatorIngress:
    async def __init__(self, scorer: DeploymentHandle, app_config: dict[str, Any]):
        self.config = AppConfig(**app_config)
        self.scorer = scorer
        info = await scorer.info.remote()
        self.service = ComparatorService(
            self._score_pairs, info, self.config.limits, default_orders=self.config.scorer.orders,
            reason_pairs=self._reason_pairs if self.config.reasoning.enabled else None, reasoning=self.config.reasoning,
        )
        options = [
            ("grpc.max_receive_message_length", self.config.grpc.max_message_bytes),
            ("grpc.max_send_message_length", self.config.grpc.max_message_bytes),
            ("grpc.so_reuseport", 1),
        ]
        self.token = auth.load_token(self.config.auth)
        auth.check_exposure(self.config.grpc.host, self.token, self.config.auth, "grpc.host")
        interceptors = [auth.TokenInterceptor(self.token)] if self.token else []
        self.server = grpc.aio.server(options=options, interceptors=interceptors)
        gram_pb2_grpc.add_RewardComparatorServicer_to_server(_Servicer(self.service), self.server)
        address = _bind_address(self.config.grpc.host, self.config.grpc.port)
        if self.config.grpc.tls_cert_file:
            credentials = auth.server_credentials(self.config.grpc.tls_cert_file, self.config.grpc.tls_key_file)
            self.port = self.server.add_secure_port(address, credentials)
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"gRPC: could not bind {address}")
        await self.server.start()
        self.policy_template = PolicyTemplate(self.config.openrlhf.policy_template)
        logger.info("gram.v1.RewardComparator listening on %s", _bind_address(self.config.grpc.host, self.port))

    async def _score_pairs(self, pairs: list[Pair], orders: str) -> list[PairScore]:
        # The judge skips pairs whose caller has already given up (gRPC deadline), rather than
        # computing answers nobody reads while later requests wait.
        deadline = caller_deadline()
        return list(await asyncio.gather(
            *(retrying(lambda p=p: self.scorer.score.remote(PairJob(p, orders, deadline))) for p in pairs)))

    async def _reason_pairs(self, pairs: list[Pair], orders: str, votes: int) -> list[PairScore]:
        sampling = self.config.reasoning.sampling.model_dump()
        return await retrying(lambda: self.scorer.reason.remote(pairs, orders, votes, sampling))

    async def grpc_port(self) -> int:
        return self.port

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        path = request.url.path.rstrip("/")
        # Every route needs the token. OpenRLHF's client cannot add a header, so ?token= is accepted
        # too (URLs end up in logs; prefer the header).
        header = request.headers.get(auth.METADATA_KEY) or (
            f"Bearer {request.query_params['token']}" if "token" in request.query_params else None)
        if not auth.authorized(header, self.token):
            return JSONResponse({"error": "authorization: missing or wrong bearer token"}, status_code=401)
        if request.method == "GET" and path.endswith("/health"):
            return JSONResponse({"status": "SERVING", "model": self.service.model_info})
        if request.method == "POST" and path.endswith("/get_reward"):
            try:
                body = json.loads(await request.body())
                return JSONResponse(await openrlhf_rewards(self.service, body, self.policy_template, self.config.openrlhf))
            except (RequestError, ValueError) as exc:
                return JSONResponse({"error": getattr(exc, "message", str(exc))}, status_code=400)
            except (BackPressureError, *RETRYABLE) as exc:
                return JSONResponse({"error": f"the judge is unavailable or full ({type(exc).__name__}); retry"},
                                    status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"error": f"no route {request.method} {path}; use POST /get_reward or GET /health"}, status_code=404)

    async def __del__(self):
        await self.server.stop(grace=2.0)


async def openrlhf_rewards(
    service: ComparatorService, body: Any, template: PolicyTemplate | None = None, config: OpenRLHFConfig | None = None,
) -> dict[str, Any]:
    """OpenRLHF remote reward model: ``{"query": [...], "prompts": [...], "labels": [...]}`` →
    ``{"rewards": [...], "scores": [...], "extra_logs": {...}}``.

    ``prompts[i]`` is the policy's chat-templated prompt and ``query[i]`` that prompt + the response
    + the policy's end-of-turn token. The conversation is recovered from the prompt
    (:mod:`gram_ray.policy_chat`) and the end-of-turn stripped, so the judge reads what the dataset
    holds. With ``labels`` (and ``openrlhf.labels: reference``; also the older ``references`` key)
    the reward is the log-odds of beating that reference; without, responses to the same prompt
    form a group judged against its first response (reward 0). Prompts no family parses are
    judged as they came and counted in ``extra_logs.gram_unparsed_prompts``.
    """
    template = template or PolicyTemplate("auto")
    config = config or OpenRLHFConfig()
    if not isinstance(body, dict):
        raise ValueError("body: expected a JSON object")
    queries = body.get("query")
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise ValueError("query: expected a list of strings")
    prompts = body.get("prompts")
    if prompts is None:
        raise ValueError("prompts: missing (OpenRLHF sends the prompt of each query)")
    if not isinstance(prompts, list) or len(prompts) != len(queries):
        raise ValueError(f"prompts: expected a list of {len(queries)} strings, one per query")
    key = "references" if body.get("references") is not None else "labels"
    references = body.get(key) if key == "references" or config.labels == "reference" else None
    if isinstance(references, list) and all(r is None for r in references):
        references = None  # a dataset without a label column: OpenRLHF sends null labels
    if references is not None and (not isinstance(references, list) or len(references) != len(queries)):
        raise ValueError(f"{key}: expected a list of {len(queries)} strings, one per query")
    items, unparsed = [], 0
    for i, (query, prompt) in enumerate(zip(queries, prompts, strict=True)):
        if not isinstance(prompt, str):
            raise ValueError(f"prompts[{i}]: expected a string")
        parsed = template.parse_prompt(prompt)
        unparsed += parsed.family is None
        response = template.clean_response(query[len(prompt):] if query.startswith(prompt) else query, parsed.family)
        if isinstance(parsed.prompt, str):
            prompt_proto = pb.Prompt(text=parsed.prompt)
        else:
            prompt_proto = pb.Prompt(conversation=pb.Conversation(
                messages=[pb.ChatMessage(role=m["role"], content=m["content"]) for m in parsed.prompt]))
        item = pb.RewardItem(prompt=prompt_proto, response=response, group=prompt)
        if references is not None:
            if not isinstance(references[i], str) or not references[i]:
                raise ValueError(f"{key}[{i}]: expected a non-empty string")
            item.reference = references[i]
        items.append(item)
    response = await service.reward(pb.RewardRequest(items=items, group_scoring=GROUP_SCORINGS[config.group_scoring]))
    rewards = list(response.rewards)
    n = len(rewards)
    return {"rewards": rewards, "scores": rewards, "extra_logs": {
        "gram_unparsed_prompts": [float(unparsed)] * n, "gram_comparisons": [float(response.comparisons)] * n}}
