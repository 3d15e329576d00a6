"""Ray Data batch inference over a pool of model actors, shared by evaluation and self-training.

``judge_pairs`` scores pairs in both orders (optionally with GRAM-R² rationales and votes) and
``prove_pairs`` has the preference-proving model write a rationale for a given label. Both map
typed inputs to typed results through one actor pool (one actor per GPU, else one per 2 CPUs),
so the same call scales from this machine to a cluster. ``num_actors=0`` runs one actor in this
process instead, without Ray (a machine whose image lacks it, e.g. a lone GPU box). Rationales travel between the actors and
the driver as one JSON column (Arrow needs one schema per column); that encoding is private here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gram_ray.judge import Pair
from gram_ray.reasoning import Rationale, SamplingConfig
from gram_ray.scorer import ScorerConfig


@dataclass(frozen=True)
class Judgement:
    """One pair judged in both orders (``p_*`` in "response_a is better" terms)."""

    p_a_better: float
    p_ab: float
    p_ba: float
    truncated: bool
    rationales: list[Rationale] = field(default_factory=list)  # reasoning only
    unparsed: int = 0
    generated_tokens: int = 0  # per actor batch, on its first pair (sum them for throughput)
    seconds: float = 0.0  # likewise


@dataclass(frozen=True)
class Proof:
    rationale: str | None  # None: the prover wrote nothing usable
    generated_tokens: int = 0
    seconds: float = 0.0


class ScorerActor:
    """One GRAM scorer per actor; judges a batch of pairs in both orders."""

    def __init__(self, scorer_config: dict[str, Any], reasoning: dict[str, Any] | None = None):
        from gram_ray.scorer import GramScorer

        self.scorer = GramScorer.from_config(ScorerConfig(**scorer_config))
        self.reasoning = reasoning  # {"votes": k, "sampling": {...}} or None

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        pairs = [Pair(p, a, b) for p, a, b in zip(batch["prompt"], batch["a"], batch["b"], strict=True)]
        started, tokens_before = time.perf_counter(), self.scorer.stats.generated_tokens
        if self.reasoning:
            results = self.scorer.score_reasoning(
                pairs, self.reasoning["votes"], "both", SamplingConfig(**self.reasoning["sampling"])
            )
        else:
            results = self.scorer.score(pairs, orders="both")
        return {
            "job": batch["job"],
            "p_a_better": [r.p_a_better for r in results],
            "p_ab": [r.p_ab for r in results],
            "p_ba": [r.p_ba for r in results],
            "truncated": [r.truncated.any for r in results],
            "rationales": [json.dumps([vars(x) for x in r.rationales]) for r in results],
            "unparsed": [r.unparsed for r in results],
            **_batch_cost(len(results), self.scorer.stats.generated_tokens - tokens_before, started),
        }


class ProverActor:
    """The preference-proving model: one rationale per pair for the label it is given."""

    def __init__(self, scorer_config: dict[str, Any], sampling: dict[str, Any]):
        from gram_ray.scorer import GramScorer

        self.scorer = GramScorer.from_config(ScorerConfig(**scorer_config))
        self.sampling = SamplingConfig(**sampling)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from gram_ray.reasoning import prove

        pairs = [Pair(p, a, b) for p, a, b in zip(batch["prompt"], batch["a"], batch["b"], strict=True)]
        texts, _ = self.scorer.truncate_pairs(pairs)
        started = time.perf_counter()
        rationales, tokens = prove(self.scorer.model, self.scorer.tokenizer, texts, list(batch["label"]), self.sampling)
        return {"job": batch["job"], "rationale": [r or "" for r in rationales], **_batch_cost(len(rationales), tokens, started)}


def _batch_cost(n: int, tokens: int, started: float) -> dict[str, list]:
    """Per batch, on its first row: generated tokens and seconds (for tokens/s)."""
    return {"generated_tokens": [tokens] + [0] * (n - 1), "seconds": [time.perf_counter() - started] + [0.0] * (n - 1)}


def actor_pool(num_actors: int | None) -> tuple[int, dict[str, Any]]:
    """(actors, resources per actor) of a pool: one per GPU, else one per 2 CPUs, unless set."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = num_actors or (gpus if gpus else max(1, cpus // 2))
    return actors, ({"num_gpus": 1} if gpus else {"num_cpus": max(1, cpus // actors)})


def map_actor_pool(
    actor: type, kwargs: dict[str, Any], items: list[dict[str, Any]], batch_size: int, num_actors: int | None,
) -> dict[int, dict[str, Any]]:
    """Ray Data batch inference: ``items`` (each with an int ``job``) through a pool of ``actor``
    (sized by :func:`actor_pool`); the output rows by job."""
    if num_actors == 0:
        return _map_in_process(actor, kwargs, items, batch_size)
    _init_ray()
    import ray.data

    actors, per_actor = actor_pool(num_actors)
    dataset = ray.data.from_items(items).map_batches(
        actor, fn_constructor_kwargs=kwargs, batch_size=batch_size, concurrency=actors, batch_format="pandas",
        **per_actor,
    )
    return {int(r["job"]): r for r in dataset.iter_rows()}


def _map_in_process(actor: type, kwargs: dict[str, Any], items: list[dict[str, Any]], batch_size: int) -> dict[int, dict[str, Any]]:
    """:func:`map_actor_pool` with one ``actor`` in this process: same batches, same output rows.
    Progress goes to stderr (Ray Data shows its own on the pooled path)."""
    from tqdm.auto import tqdm

    instance, rows = actor(**kwargs), {}
    with tqdm(total=len(items), desc=actor.__name__, unit="item") as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            out = instance({key: [item[key] for item in chunk] for key in chunk[0]})
            for k in range(len(chunk)):
                row = {key: values[k] for key, values in out.items()}
                rows[int(row["job"])] = row
            bar.update(len(chunk))
    return rows


def _init_ray() -> None:
    import os

    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)


def judge_pairs(
    scorer: ScorerConfig, pairs: Sequence[Pair], batch_size: int = 16, num_actors: int | None = None,
    votes: int | None = None, sampling: SamplingConfig | None = None,
) -> list[Judgement]:
    """Each pair judged in both orders, in input order; with ``votes``, by GRAM-R² reasoning."""
    reasoning = None if votes is None else {"votes": votes, "sampling": (sampling or SamplingConfig()).model_dump()}
    items = [{"job": k, "prompt": p.prompt, "a": p.response_a, "b": p.response_b} for k, p in enumerate(pairs)]
    rows = map_actor_pool(ScorerActor, {"scorer_config": scorer.model_dump(), "reasoning": reasoning}, items,
                          batch_size, num_actors)
    return [
        Judgement(
            p_a_better=float(r["p_a_better"]), p_ab=float(r["p_ab"]), p_ba=float(r["p_ba"]), truncated=bool(r["truncated"]),
            rationales=[Rationale(**x) for x in json.loads(r["rationales"])], unparsed=int(r["unparsed"]),
            generated_tokens=int(r["generated_tokens"]), seconds=float(r["seconds"]),
        )
        for r in (rows[k] for k in range(len(pairs)))
    ]


def prove_pairs(
    scorer: ScorerConfig, sampling: SamplingConfig, pairs: Sequence[Pair], labels: Sequence[str],
    batch_size: int = 16, num_actors: int | None = None,
) -> list[Proof]:
    """A rationale for each pair's given label ("A" or "B"), in input order."""
    if not pairs:
        return []
    items = [{"job": k, "prompt": p.prompt, "a": p.response_a, "b": p.response_b, "label": label}
             for k, (p, label) in enumerate(zip(pairs, labels, strict=True))]
    rows = map_actor_pool(ProverActor, {"scorer_config": scorer.model_dump(), "sampling": sampling.model_dump()}, items,
                          batch_size, num_actors)
    return [Proof(r["rationale"] or None, int(r["generated_tokens"]), float(r["seconds"])) for r in (rows[k] for k in range(len(pairs)))]
