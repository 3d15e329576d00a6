"""The scorer deployment: one GRAM model per replica, concurrent requests merged by ``@serve.batch``.

Each call scores one pair. Calls that arrive together (from many clients, or from one Rank or
Reward request split into pairs) are merged into one ``GramScorer.score`` call, which packs them into
token-budgeted forward passes. The forward pass runs in a worker thread so that the replica's event
loop keeps collecting the next batch meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray import serve

from gram_ray.judge import Pair
from gram_ray.reasoning import SamplingConfig
from gram_ray.scorer import GramScorer, PairScore, ScorerConfig
from gram_ray.serve.config import BatchingConfig

logger = logging.getLogger(__name__)


JUDGE_DEPLOYMENT = "Judge"
"""The deployment's name in serve configs (``deployments: - name: Judge``); the model engine inside
each replica is :class:`~gram_ray.scorer.GramScorer`."""


@dataclass(frozen=True)
class PairJob:
    pair: Pair
    orders: str = "both"
    deadline: float | None = None  # the caller's deadline, epoch seconds (time.time(): comparable across nodes)


class DeadlineExpired(Exception):
    """The caller's deadline passed while the pair waited for the model: it was not scored (the
    caller has already given up, so computing it would only delay the requests behind it)."""


_EXPIRED = object()


def replica_cpus() -> int | None:
    """Whole CPUs Ray assigned to this process (``ray_actor_options.num_cpus``); None when under one."""
    if not ray.is_initialized():
        return None
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)
    return int(cpus) if cpus >= 1 else None


@serve.deployment(name=JUDGE_DEPLOYMENT, max_ongoing_requests=128)
class ScorerDeployment:
    def __init__(self, scorer: dict[str, Any], batching: dict[str, Any]):
        self.config = ScorerConfig(**scorer)
        batching_config = BatchingConfig(**batching)
        if (cpus := replica_cpus()) is not None:
            torch.set_num_threads(cpus)  # a replica computes on the cores it holds, no more, no fewer
        self.scorer = GramScorer.from_config(self.config)
        self._score_batch.set_max_batch_size(batching_config.max_batch_pairs)
        self._score_batch.set_batch_wait_timeout_s(batching_config.batch_wait_timeout_s)
        # One thread: the model is used by one batch at a time, off the event loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gram-forward")
        self.batch_sizes: Counter[int] = Counter()
        self.expired_pairs = 0
        self._batch_metric = None
        try:
            from ray.serve.metrics import Histogram

            self._batch_metric = Histogram(
                "gram_scorer_batch_size",
                description="pairs per scorer batch",
                boundaries=[1, 2, 4, 8, 16, 32, 64, 128],
            )
        except Exception:  # metrics are optional (e.g. no metrics agent)
            logger.debug("batch-size metric unavailable", exc_info=True)
        logger.info("GRAM scorer ready: %s", self.scorer.info())

    async def score(self, job: PairJob) -> PairScore:
        result = await self._score_batch(job)
        if result is _EXPIRED:
            raise DeadlineExpired("the caller's deadline passed before the judge reached this pair")
        return result

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _score_batch(self, jobs: list[PairJob]) -> list[PairScore]:
        self.batch_sizes[len(jobs)] += 1
        if self._batch_metric is not None:
            self._batch_metric.observe(len(jobs))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._score_jobs, jobs)

    def _score_jobs(self, jobs: list[PairJob]) -> list[Any]:
        now = time.time()
        results: list[Any] = [_EXPIRED if job.deadline is not None and job.deadline <= now else None for job in jobs]
        self.expired_pairs += sum(r is _EXPIRED for r in results)
        for orders in {job.orders for job in jobs}:
            idx = [i for i, job in enumerate(jobs) if job.orders == orders and results[i] is None]
            if not idx:
                continue
            for i, result in zip(idx, self.scorer.score([jobs[i].pair for i in idx], orders=orders), strict=True):
                results[i] = result
        return results  # type: ignore[return-value]

    async def reason(self, pairs: list[Pair], orders: str, votes: int, sampling: dict[str, Any]) -> list[PairScore]:
        """GRAM-R²: one request's pairs generate together (k samples each); not merged across
        requests, since generation time is set by the longest rationale rather than by the batch."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: self.scorer.score_reasoning(pairs, votes, orders, SamplingConfig(**sampling))
        )

    def info(self) -> dict[str, Any]:
        return self.scorer.info()

    def stats(self) -> dict[str, Any]:
        sizes = dict(sorted(self.batch_sizes.items()))
        batches = sum(sizes.values())
        pairs = sum(size * count for size, count in sizes.items())
        return {
            "batch_sizes": sizes,
            "batches": batches,
            "pairs": pairs,
            "max_batch_pairs_seen": max(sizes, default=0),
            "expired_pairs": self.expired_pairs,
            "mean_batch_size": pairs / batches if batches else 0.0,
            "scorer": vars(self.scorer.stats),
            "torch_threads": torch.get_num_threads(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),  # the replica's process (fault tests kill it)
        }
