"""Offline scoring of a pair file: ``gram-ray score INPUT --model M --out OUT.jsonl``.

Every row is validated before any model work starts, so a malformed row stops the job at once with
its file, line and field (or is skipped and counted with ``skip_bad_rows``). Pairs are scored in
chunks with a progress bar, and the output appears only when complete (written atomically).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from gram_ray.data import atomic_writer, read_pairs
from gram_ray.judge import verdict
from gram_ray.scorer import GramScorer, ScorerConfig

logger = logging.getLogger(__name__)


class ScoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Path
    out: Path
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    skip_bad_rows: bool = False
    limit: int | None = Field(None, gt=0)
    chunk_size: int = Field(256, gt=0, description="pairs per scorer call (progress granularity)")


class ScoreSummary(BaseModel):
    rows: int
    skipped: int
    truncated_pairs: int
    labeled: int
    accuracy: float | None
    seconds: float
    pairs_per_second: float
    out: str


def score_file(config: ScoreConfig, scorer: GramScorer | None = None) -> ScoreSummary:
    rows, skipped = read_pairs(config.input, skip_bad_rows=config.skip_bad_rows, limit=config.limit)
    for error in skipped:
        logger.warning("skipped %s", error)
    scorer = scorer or GramScorer.from_config(config.scorer)
    start = time.perf_counter()
    truncated = correct = labeled = 0
    with atomic_writer(config.out) as out, tqdm(total=len(rows), desc="scoring", unit="pair") as bar:
        for begin in range(0, len(rows), config.chunk_size):
            chunk = rows[begin : begin + config.chunk_size]
            for row, result in zip(chunk, scorer.score([r.pair for r in chunk]), strict=True):
                record = {"id": row.id, "line": row.line, **result.as_dict()}
                truncated += result.truncated.any
                if row.label is not None:
                    predicted = verdict(result.p_a_better)  # a tie is no verdict, never a correct one
                    record["label"] = row.label
                    record["correct"] = predicted == row.label
                    labeled += 1
                    correct += record["correct"]
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            bar.update(len(chunk))
    seconds = time.perf_counter() - start
    return ScoreSummary(
        rows=len(rows),
        skipped=len(skipped),
        truncated_pairs=truncated,
        labeled=labeled,
        accuracy=correct / labeled if labeled else None,
        seconds=round(seconds, 3),
        pairs_per_second=round(len(rows) / seconds, 3) if seconds > 0 else 0.0,
        out=str(config.out),
    )
