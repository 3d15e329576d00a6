"""GRAM-R² self-training on unlabeled pairs: ``gram-ray self-train train_configs/self_train.yaml``.

Also as a Ray job: ``ray job submit --working-dir . -- gram-ray self-train train_configs/self_train.yaml``.

Each round, on its own slice of the unlabeled pairs:

1. **predict**: the reasoning reward model judges every pair (``votes`` sampled rationales in each
   order) through Ray Data with an actor pool of scorers;
2. **filter**: keep a pair only when the two orders agree and the vote share clears
   ``min_confidence`` (the count kept is reported per round);
3. **prove**: the preference-proving model writes a rationale for each kept pair's predicted label
   (same actor pool mechanism);
4. **retrain**: the reasoner is trained (``gram-ray train`` with ``retrain_config``) on the new
   rationales plus the labeled ones, and the result judges the next round.

Every step writes its output atomically under ``<output_dir>/round_<r>/``; a rerun skips whatever
exists, so an interrupted job resumes at the step it reached.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gram_ray.data import atomic_writer, iter_jsonl, parse_pair_row
from gram_ray.judge import Pair, render_question, verdict
from gram_ray.models import TRAINING_RECORD
from gram_ray.pool import judge_pairs, prove_pairs
from gram_ray.reasoning import SamplingConfig
from gram_ray.scorer import ScorerConfig
from gram_ray.train.config import load_train_config, read_config, resolve_project_paths

logger = logging.getLogger(__name__)


class SelfTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reasoner: str = Field(description="the reasoning reward model of round 0 (e.g. runs/reasoner/final)")
    prover: str = Field(description="the preference-proving model (e.g. runs/prover/final)")
    unlabeled: list[str] = Field(description="JSONL(.gz) pairs without labels")
    labeled_rationales: list[str] = Field(default_factory=list, description="mixed into every retraining")
    output_dir: str
    rounds: int = Field(2, gt=0)
    pairs_per_round: int = Field(200, gt=0, description="each round takes the next slice of unlabeled pairs")
    votes: int = Field(2, gt=0, description="reasoning samples per pair and order")
    min_confidence: float = Field(0.75, ge=0.5, le=1.0, description="keep when the winning vote share is at least this")
    require_agreement: bool = Field(True, description="keep only pairs whose two orders give the same verdict")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="reasoner sampling")
    prover_sampling: SamplingConfig = Field(default_factory=lambda: SamplingConfig(temperature=0.3))
    max_prompt_tokens: int = Field(256, gt=0)
    max_response_tokens: int = Field(256, gt=0)
    num_actors: int | None = Field(None, ge=0, description="generation actors; default one per GPU, else one per 2 CPUs; 0 = in this process, without Ray")
    batch_size: int = Field(8, gt=0, description="pairs per actor call")
    retrain_config: str = Field(description="the reasoner's training config (train_configs/reasoner.yaml)")
    retrain_overrides: list[str] = Field(default_factory=list, description="--set overrides for retraining")


def load_self_train_config(path: str | Path, overrides: list[str] | None = None) -> SelfTrainConfig:
    """YAML → config; relative paths resolve against the project root, as for training configs (a
    model path resolves once it exists: run the prover and reasoner configs first)."""
    raw, base = read_config(path, overrides)
    resolve_project_paths(raw, base, files=("unlabeled", "labeled_rationales"), dirs=("output_dir", "retrain_config"),
                          models=("reasoner", "prover"))
    return SelfTrainConfig(**raw)


# ----------------------------------------------------------------------------------------------
# Ray Data actors
# ----------------------------------------------------------------------------------------------


def _scorer(cfg: SelfTrainConfig, model: str) -> ScorerConfig:
    return ScorerConfig(model=model, max_prompt_tokens=cfg.max_prompt_tokens, max_response_tokens=cfg.max_response_tokens)


# ----------------------------------------------------------------------------------------------
# Rounds
# ----------------------------------------------------------------------------------------------


def round_pairs(cfg: SelfTrainConfig, round_index: int) -> list[dict[str, Any]]:
    """This round's slice of the unlabeled files (validated, with file:line for errors)."""
    start, stop = round_index * cfg.pairs_per_round, (round_index + 1) * cfg.pairs_per_round
    out: list[dict[str, Any]] = []
    n = 0
    for path in cfg.unlabeled:
        for line, row in iter_jsonl(path):
            if n >= stop:
                return out
            if n >= start:
                parsed = parse_pair_row(row, path, line)
                out.append({"id": parsed.id if parsed.id is not None else f"{Path(path).name}:{line}",
                            "prompt": row["prompt"], "question": render_question(parsed.pair.prompt),
                            "response_a": parsed.pair.response_a, "response_b": parsed.pair.response_b})
            n += 1
    return out


def keep_prediction(p_a_better: float, p_ab: float, p_ba: float, min_confidence: float, require_agreement: bool) -> str | None:
    """The predicted label when a prediction is trusted enough to train on, else None."""
    label = verdict(p_a_better)
    if label is None or max(p_a_better, 1.0 - p_a_better) < min_confidence:
        return None
    if require_agreement and not (verdict(p_ab) == verdict(p_ba) == label):
        return None
    return label


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_writer(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_jsonl(path)]


def run_round(cfg: SelfTrainConfig, r: int, reasoner: str) -> tuple[str, dict[str, Any]]:
    """One round; returns (the retrained reasoner, the round's summary)."""
    from gram_ray.train.run import train

    folder = Path(cfg.output_dir) / f"round_{r}"
    summary_path = folder / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        logger.info("round %d: done earlier (%s)", r, summary_path)
        return summary["model"], summary

    pairs = round_pairs(cfg, r)
    if not pairs:
        raise ValueError(f"unlabeled: no pairs left for round {r} ({cfg.pairs_per_round} per round)")
    items = [Pair(p["question"], p["response_a"], p["response_b"]) for p in pairs]

    predictions_path = folder / "predictions.jsonl"
    if not predictions_path.exists():
        started = time.time()
        judged = judge_pairs(_scorer(cfg, reasoner), items, cfg.batch_size, cfg.num_actors, votes=cfg.votes, sampling=cfg.sampling)
        rows = []
        for p, j in zip(pairs, judged, strict=True):
            label = keep_prediction(j.p_a_better, j.p_ab, j.p_ba, cfg.min_confidence, cfg.require_agreement)
            rows.append({"id": p["id"], "p_a_better": j.p_a_better, "p_ab": j.p_ab, "p_ba": j.p_ba,
                         "unparsed": j.unparsed, "samples": len(j.rationales), "label": label, "kept": label is not None,
                         "generated_tokens": j.generated_tokens, "seconds": j.seconds})
        _write_jsonl(predictions_path, rows)
        logger.info("round %d: judged %d pairs in %.0f s", r, len(rows), time.time() - started)
    predictions = _read_jsonl(predictions_path)

    rationales_path = folder / "rationales.jsonl"
    if not rationales_path.exists():
        kept = [(i, p) for i, (p, pred) in enumerate(zip(pairs, predictions, strict=True)) if pred["kept"]]
        proved = prove_pairs(_scorer(cfg, cfg.prover), cfg.prover_sampling, [items[i] for i, _ in kept],
                             [predictions[i]["label"] for i, _ in kept], cfg.batch_size, cfg.num_actors)
        rows = []
        for (i, p), proof in zip(kept, proved, strict=True):
            rationale = proof.rationale
            if rationale:
                rows.append({"id": p["id"], "prompt": p["prompt"], "response_a": p["response_a"], "response_b": p["response_b"],
                             "label": predictions[i]["label"], "rationale": rationale, "source": f"self-train round {r}"})
        _write_jsonl(rationales_path, rows)
        prover_tokens = sum(proof.generated_tokens for proof in proved)
        prover_seconds = sum(proof.seconds for proof in proved)
        (folder / "prover_stats.json").write_text(json.dumps({"generated_tokens": prover_tokens, "seconds": prover_seconds}))
    synthesized = _read_jsonl(rationales_path)

    train_dir = folder / "train"
    final = train_dir / "final"
    if not (final / TRAINING_RECORD).exists():
        data = [str(rationales_path)] if synthesized else []
        data += list(cfg.labeled_rationales)
        if not data:
            raise ValueError(f"round {r}: nothing to retrain on (no pair kept, no labeled_rationales)")
        overrides = [*cfg.retrain_overrides, f"model={reasoner}", f"output_dir={train_dir}", f"data={json.dumps(data)}"]
        train(load_train_config(cfg.retrain_config, overrides))

    tokens = sum(p["generated_tokens"] for p in predictions)
    seconds = sum(p["seconds"] for p in predictions)
    prover = json.loads((folder / "prover_stats.json").read_text())
    summary = {
        "round": r, "pairs": len(predictions), "kept": sum(p["kept"] for p in predictions),
        "kept_fraction": sum(p["kept"] for p in predictions) / len(predictions),
        "rationales": len(synthesized), "unparsed_samples": sum(p["unparsed"] for p in predictions),
        "samples": sum(p["samples"] for p in predictions),
        "reasoner_tokens_per_s": tokens / seconds if seconds else None,
        "prover_tokens_per_s": prover["generated_tokens"] / prover["seconds"] if prover["seconds"] else None,
        "judged_with": reasoner, "model": str(final),
    }
    with atomic_writer(summary_path) as f:
        json.dump(summary, f, indent=2)
    return str(final), summary


def self_train(cfg: SelfTrainConfig) -> dict[str, Any]:
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=True)
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    reasoner, rounds = cfg.reasoner, []
    for r in range(cfg.rounds):
        reasoner, summary = run_round(cfg, r, reasoner)
        rounds.append(summary)
        print(f"[gram-ray] self-train round {r}: kept {summary['kept']}/{summary['pairs']} "
              f"({summary['kept_fraction']:.0%}), {summary['rationales']} rationales → {summary['model']}", flush=True)
    result = {"rounds": rounds, "final_model": reasoner}
    with atomic_writer(Path(cfg.output_dir) / "summary.json") as f:
        json.dump(result, f, indent=2)
    return result
