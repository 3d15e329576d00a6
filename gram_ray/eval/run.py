"""Evaluation at scale: ``gram-ray eval DATA --model M --out DIR [--format auto|pairs|rmbench|judgebench|rewardbench]``.

Every comparison a benchmark needs (RM-Bench: 9 per prompt; the others: 1 per pair) is judged in
both orders by Ray Data batch inference over an actor pool of scorers (one per CPU slot or GPU), so
the same command scales from this machine to a cluster. Writes ``DIR/predictions.jsonl`` (one line
per comparison), ``DIR/metrics.json`` (the official scoring, see :mod:`gram_ray.eval.metrics`) and
``DIR/report.md`` with PNG plots (accuracy per subset, reliability diagram with ECE, position-flip
rate); every file appears only when complete.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gram_ray.data import DataError, atomic_writer, iter_jsonl, parse_pair_row
from gram_ray.eval import metrics as rules
from gram_ray.judge import Calibration, Pair, render_question
from gram_ray.models import ModelSource, resolve_model, saved_calibration, trained_budgets
from gram_ray.pool import judge_pairs
from gram_ray.reasoning import SamplingConfig
from gram_ray.scorer import ScorerConfig

logger = logging.getLogger(__name__)

Format = Literal["auto", "pairs", "rmbench", "judgebench", "rewardbench"]


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: Path
    out: Path
    format: Format = "auto"
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    offset: int = Field(0, ge=0, description="skip the first N rows (e.g. rows kept for calibration or reporting)")
    limit: int | None = Field(None, gt=0, description="first N rows (prompts) only, after offset")
    num_actors: int | None = Field(None, ge=0, description="scorer actors; default one per GPU, else one per 2 CPUs; "
                                   "0 = score in this process, without Ray")
    batch_size: int = Field(16, gt=0, description="comparisons per actor call")
    reasoning: bool = Field(False, description="GRAM-R²: sampled rationales and a majority vote")
    votes: int = Field(1, gt=0, description="reasoning samples per pair and order")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)


# ----------------------------------------------------------------------------------------------
# Reading benchmarks into comparisons
# ----------------------------------------------------------------------------------------------


def detect_format(row: dict[str, Any]) -> str:
    if isinstance(row.get("chosen"), list) and isinstance(row.get("rejected"), list):
        return "rmbench"
    if "response_A" in row and str(row.get("label", "")) in ("A>B", "B>A"):
        return "judgebench"
    if "subset" in row and "chosen" in row:
        return "rewardbench"
    return "pairs"


def load_comparisons(cfg: EvalConfig) -> tuple[str, list[dict[str, Any]]]:
    """Flat comparisons ``{row, line, i, j, prompt, a, b, …}`` with file/line errors for bad rows."""
    jobs: list[dict[str, Any]] = []
    fmt = cfg.format
    for n, (line, row) in enumerate(iter_jsonl(cfg.data)):
        if n < cfg.offset:
            continue
        if cfg.limit is not None and n >= cfg.offset + cfg.limit:
            break
        if fmt == "auto":
            fmt = detect_format(row)
        if fmt == "rmbench":
            for name in ("chosen", "rejected"):
                value = row.get(name)
                if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)):
                    raise DataError(cfg.data, line, name, "expected a list of 3 strings (RM-Bench format)")
            if not isinstance(row.get("prompt"), str):
                raise DataError(cfg.data, line, "prompt", "missing or not a string")
            domain = rules.rmbench_domain(str(row.get("source") or row.get("subset") or "rmbench"))
            for i in range(3):
                for j in range(3):
                    jobs.append({"row": n, "line": line, "id": row.get("id"), "i": i, "j": j, "subset": domain,
                                 "prompt": row["prompt"], "a": row["chosen"][i], "b": row["rejected"][j], "label": "A"})
            continue
        parsed = parse_pair_row(row, cfg.data, line)
        if parsed.label is None:
            raise DataError(cfg.data, line, "label", "missing (evaluation needs to know the better response)")
        subset = str(row.get("subset") or row.get("source") or "")
        jobs.append({"row": n, "line": line, "id": parsed.id, "i": 0, "j": 0, "subset": subset,
                     "prompt": render_question(parsed.pair.prompt), "a": parsed.pair.response_a,
                     "b": parsed.pair.response_b, "label": parsed.label, "raw_label": row.get("label")})
    if not jobs:
        raise DataError(cfg.data, 1, None, "no rows to evaluate")
    return fmt, jobs


# ----------------------------------------------------------------------------------------------
# Ray Data batch inference
# ----------------------------------------------------------------------------------------------


def score_jobs(cfg: EvalConfig, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each comparison judged in both orders by the shared actor pool; the job rows with the verdicts."""
    pairs = [Pair(j["prompt"], j["a"], j["b"]) for j in jobs]
    judged = judge_pairs(cfg.scorer, pairs, cfg.batch_size, cfg.num_actors,
                         votes=cfg.votes if cfg.reasoning else None, sampling=cfg.sampling)
    return [{**job, **vars(j)} for job, j in zip(jobs, judged, strict=True)]


# ----------------------------------------------------------------------------------------------
# Metrics, report
# ----------------------------------------------------------------------------------------------


def compute_metrics(fmt: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    pairs = [rules.PairPrediction(r["label"], r["p_a_better"], r["p_ab"], r["p_ba"], r["subset"]) for r in results]
    metrics: dict[str, Any] = {"format": fmt, "comparisons": len(results), "pairs": rules.pairs_metrics(pairs)}
    if fmt == "rmbench":
        matrices: dict[int, tuple[str, list[list[float]]]] = {}
        for r in results:
            domain, matrix = matrices.setdefault(r["row"], (r["subset"], [[0.0] * 3 for _ in range(3)]))
            matrix[r["i"]][r["j"]] = r["p_a_better"]
        metrics["rmbench"] = rules.rmbench_metrics(matrices.values())
        metrics["headline"] = {"name": "RM-Bench overall", "value": metrics["rmbench"]["overall"]}
    elif fmt == "judgebench":
        metrics["judgebench"] = rules.judgebench_metrics(
            (r["subset"], r["raw_label"], r["p_ab"], r["p_ba"]) for r in results
        )
        metrics["headline"] = {"name": "JudgeBench overall", "value": metrics["judgebench"]["overall"]}
    elif fmt == "rewardbench":
        metrics["rewardbench"] = rules.rewardbench_metrics((r["subset"], r["p_a_better"]) for r in results)
        metrics["headline"] = {"name": "RewardBench overall", "value": metrics["rewardbench"]["overall"]}
    else:
        metrics["headline"] = {"name": "accuracy", "value": metrics["pairs"]["accuracy"]}
    metrics["truncated_comparisons"] = sum(bool(r["truncated"]) for r in results)
    if any(r.get("rationales") for r in results):
        samples = sum(len(r["rationales"]) for r in results)
        tokens, seconds = sum(r["generated_tokens"] for r in results), sum(r["seconds"] for r in results)
        metrics["reasoning"] = {
            "samples": samples, "unparsed": sum(r["unparsed"] for r in results),
            "unparsed_rate": sum(r["unparsed"] for r in results) / samples if samples else 0.0,
            "generated_tokens": tokens, "actor_seconds": seconds,
            "tokens_per_s_per_actor": tokens / seconds if seconds else None,
        }
    return metrics


def _save_png(fig: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def _bar_chart(plt: Any, labels: Any, values: list[float], ylabel: str, title: str, path: Path, chance: float | None = None) -> None:
    fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(labels) + 2), 3))
    ax.bar(list(labels), values, color="#4472c4")
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    _save_png(fig, path)
    plt.close(fig)


def write_report(out: Path, model: str, data: Path, metrics: dict[str, Any], results: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = metrics["pairs"]
    subsets = pairs.get("subsets") or {"all": pairs}
    _bar_chart(plt, subsets, [s["accuracy"] for s in subsets.values()], "accuracy",
               "Accuracy per subset (both orders averaged)", out / "accuracy.png", chance=0.5)

    ece, diagram = rules.pair_calibration([r["p_a_better"] for r in results], [r["label"] == "A" for r in results])
    fig, ax = plt.subplots(figsize=(4, 4))
    points = [(d["mean_p"], d["frequency"]) for d in diagram if d["count"]]
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.plot([p for p, _ in points], [f for _, f in points], marker="o", color="#c0504d")
    ax.set_xlabel("predicted p(A better)")
    ax.set_ylabel("observed frequency of A better")
    ax.set_title(f"Reliability (ECE {ece:.3f})")
    _save_png(fig, out / "reliability.png")
    plt.close(fig)

    _bar_chart(plt, subsets, [s["flip_rate"] or 0.0 for s in subsets.values()], "flip rate",
               "Verdict flips when A and B are swapped", out / "flip_rate.png")

    headline = metrics["headline"]
    low, high = pairs["accuracy_ci95"]
    lines = [
        f"# Evaluation of `{model}` on `{data.name}`", "",
        f"- **{headline['name']}: {headline['value']:.4f}**",
        f"- pairwise accuracy (both orders averaged): {pairs['accuracy']:.4f} (95% CI {low:.3f}–{high:.3f}, n={pairs['n']})",
        f"- position-flip rate: {pairs['flip_rate']:.4f}" if pairs["flip_rate"] is not None else "- position-flip rate: n/a",
        f"- ECE: {pairs['ece']:.4f}",
        f"- comparisons with truncated text: {metrics['truncated_comparisons']} of {metrics['comparisons']}",
    ]
    if "length_baseline" in metrics:
        base = metrics["length_baseline"]
        lines.append(f"- \"longer visible response\" baseline (responses cut to {base['max_response_tokens']} tokens), "
                     f"same comparisons: {base['headline']['name']} {base['headline']['value']:.4f}, "
                     f"pairwise accuracy {base['pairs']['accuracy']:.4f}")
    if "length_split" in metrics:
        split = metrics["length_split"]

        def part(name: str) -> str:
            acc = split[name]["accuracy"]
            return f"{'n/a' if acc is None else f'{acc:.4f}'} (n={split[name]['n']})"

        agrees = split["agrees_with_longer"]
        lines.append(f"- pairwise accuracy where the longer visible response is better: {part('longer_wins')}; "
                     f"where the shorter is: {part('shorter_wins')}; verdict is the longer response: "
                     f"{'n/a' if agrees is None else f'{agrees:.4f}'}")
    lines.append("")
    for key in ("rmbench", "judgebench", "rewardbench", "reasoning"):
        if key in metrics:
            lines += [f"## {key}", "", "```json", json.dumps(metrics[key], indent=2), "```", ""]
    lines += ["![accuracy](accuracy.png)", "", "![reliability](reliability.png)", "", "![flip rate](flip_rate.png)", ""]
    with atomic_writer(out / "report.md") as f:
        f.write("\n".join(lines))


def response_budget(scorer: ScorerConfig, source: ModelSource) -> int:
    """The per-response token budget the scorer actors judge at (config, else the model's training record)."""
    from gram_ray.scorer import DEFAULT_MAX_TOKENS

    if scorer.max_response_tokens is not None:
        return scorer.max_response_tokens
    return trained_budgets(source).get("max_response_tokens", DEFAULT_MAX_TOKENS)


def longer_at_budget(jobs: list[dict[str, Any]], scorer: ScorerConfig, source: ModelSource) -> tuple[int, list[str | None]]:
    """The scorer's response budget, and for each comparison which response ("A", "B"; None for a tie)
    has more characters left after both are cut to it: what the judge itself gets to see."""
    from gram_ray.encoding import longer_visible
    from gram_ray.models import load_tokenizer

    tokenizer = load_tokenizer(source, trust_remote_code=scorer.trust_remote_code)
    budget = response_budget(scorer, source)
    return budget, longer_visible(tokenizer, [j["a"] for j in jobs], [j["b"] for j in jobs], budget)


def length_baseline(fmt: str, jobs: list[dict[str, Any]], scorer: ScorerConfig, source: ModelSource | None = None,
                    longer: tuple[int, list[str | None]] | None = None) -> dict[str, Any]:
    """"Prefer the longer visible response": the same comparisons, scored by which response has more
    characters left after both are cut to the scorer's response budget (a tie is no verdict), through
    the same official scoring as the model. A judge is worth something only where it beats this."""
    budget, sides = longer or longer_at_budget(jobs, scorer, source or resolve_model(scorer.model))
    results = []
    for job, side in zip(jobs, sides, strict=True):
        p = {"A": 1.0, "B": 0.0, None: 0.5}[side]
        results.append({**job, "p_a_better": p, "p_ab": p, "p_ba": p, "truncated": False})
    metrics = compute_metrics(fmt, results)
    return {"max_response_tokens": budget, "headline": metrics["headline"], "pairs": metrics["pairs"],
            **{k: metrics[k] for k in ("rmbench", "judgebench", "rewardbench") if k in metrics}}


def applied_calibration(scorer: ScorerConfig, source: ModelSource) -> Calibration:
    """The calibration the scorer actors apply (recorded so predictions can be refitted from raw margins)."""
    return saved_calibration(source) if scorer.calibrated else Calibration()


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    fmt, jobs = load_comparisons(cfg)
    logger.info("%s: %d comparisons (%s format)", cfg.data, len(jobs), fmt)
    results = score_jobs(cfg, jobs)
    metrics = compute_metrics(fmt, results)
    source = resolve_model(cfg.scorer.model)
    metrics.update({"model": cfg.scorer.model, "data": str(cfg.data), "offset": cfg.offset, "limit": cfg.limit,
                    "calibration": applied_calibration(cfg.scorer, source).as_dict()})
    if not cfg.reasoning:
        longer = longer_at_budget(jobs, cfg.scorer, source)
        metrics["length_baseline"] = length_baseline(fmt, jobs, cfg.scorer, source, longer)
        metrics["length_split"] = rules.length_split([r["label"] for r in results], [r["p_a_better"] for r in results], longer[1])
    else:
        metrics["reasoning"] = {"votes": cfg.votes, "sampling": cfg.sampling.model_dump(), **metrics.get("reasoning", {})}
    cfg.out.mkdir(parents=True, exist_ok=True)
    with atomic_writer(cfg.out / "predictions.jsonl") as f:
        for r in results:
            record = {k: r[k] for k in ("id", "line", "i", "j", "subset", "label", "p_a_better", "p_ab", "p_ba", "truncated")}
            if cfg.reasoning:
                record.update(rationales=[vars(x) for x in r["rationales"]], unparsed=r["unparsed"])
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    write_report(cfg.out, cfg.scorer.model, cfg.data, metrics, results)
    with atomic_writer(cfg.out / "metrics.json") as f:
        json.dump(metrics, f, indent=2)
    return metrics
