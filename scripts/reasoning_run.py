"""Train and measure GRAM-R² on this machine: prover, reasoner, self-training, reasoning evaluation.

    python scripts/reasoning_run.py                   # every step (resumes), then the tables
    python scripts/reasoning_run.py --no-eval         # training and self-training only
    python scripts/reasoning_run.py --rows reasoner_v1 --no-train

The reasoner starts from the shipped GRAM model (`gram_ray/models/default`); the held-out splits are
made on first use. Every step writes its result atomically and is skipped when that result
exists. Training goes through `gram-ray train` / `gram-ray self-train` with the shipped configs and
the `--set` overrides below (the ablation's CPU budget), evaluation through `gram-ray eval`'s function
with `reasoning=True`. Results: runs/r2/{prover,reasoner,self_train}/, runs/r2/eval/<row>/<benchmark>/,
runs/r2/results.json and runs/r2/table.md; the table is also written into MODEL_CARD.md and README.md
between their reasoning-table markers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ablation import BENCHMARKS, DATA, GRAM_CLI, ROOT, make_splits, publish

RUNS = ROOT / "runs" / "r2"
DEFAULT_GRAM = "gram_ray/models/default"  # the shipped GRAM model

# The ablation's budget (one worker with both cores, 128-token question and responses, LoRA r=16 on
# the last 8 layers) with rationales cut to 128 tokens (the labeled ones average 57) and lr 1e-3: at
# the ablation's 2e-4, 40 steps left the prover writing "<think>" over and over (loss 2.91 → 2.28).
BUDGET = ["num_workers=1", "resources_per_worker={CPU: 2}", "batch_size=4", "grad_accum=2", "lr=1.0e-3",
          "max_prompt_tokens=128", "max_response_tokens=128", "max_rationale_tokens=128", "checkpoint_every=20",
          "log_every=5"]
TRAIN_STEPS = 40
SELF_TRAIN = ["rounds=2", "pairs_per_round=80", "votes=1", "min_confidence=0.75", "max_prompt_tokens=128",
              "max_response_tokens=128", "sampling={max_new_tokens: 128, temperature: 0.7, top_p: 0.95, batch_size: 8}",
              "prover_sampling={max_new_tokens: 128, temperature: 0.3, top_p: 0.95, batch_size: 8}",
              "retrain_overrides=" + json.dumps([*BUDGET, "max_steps=15", "limit=200"])]
EVAL_TOKENS = {"max_prompt_tokens": 256, "max_response_tokens": 128}
EVAL_SAMPLING = {"max_new_tokens": 128, "temperature": 0.7, "top_p": 0.95, "batch_size": 8, "seed": 0}
# Prefixes of the ablation's benchmark slices: 62 comparisons. On the 2-core CPU one sampled rationale
# per order costs ~6 s a pair, about a hundred times a verdict-token score.
LIMITS = {"labeled_heldout": 16, "hh_heldout": 16, "rmbench_code": 1, "rmbench_safety_refuse": 1, "judgebench": 12}


@dataclass
class Row:
    name: str
    description: str
    model: str
    votes: int | None  # None: the verdict-token probability, no reasoning
    tokens: dict | None = None  # budgets other than EVAL_TOKENS


ROWS = [
    Row("gram", "GRAM (shipped default), verdict token, no reasoning", DEFAULT_GRAM, None),
    # The shipped default was trained at 256-token responses and is served at that budget; the reasoners
    # are trained and judged at 128 (the ablation's CPU budget), so both budgets of the verdict-token row.
    Row("gram_256", "GRAM (shipped default) at its served 256-token budget", DEFAULT_GRAM, None,
        {"max_prompt_tokens": 256, "max_response_tokens": 256}),
    Row("reasoner_v1", "GRAM-R² reasoner (labeled rationales), 1 vote per order", "runs/r2/reasoner/final", 1),
    Row("reasoner_v5", "GRAM-R² reasoner (labeled rationales), 5 votes per order", "runs/r2/reasoner/final", 5),
    Row("self_trained_v1", "reasoner after self-training, 1 vote per order", "runs/r2/self_train/round_1/train/final", 1),
    Row("self_trained_v5", "reasoner after self-training, 5 votes per order", "runs/r2/self_train/round_1/train/final", 5),
]


def run(cmd: list[str], wall: Path | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    started = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT)
    if wall is not None:
        wall.write_text(f"{time.time() - started:.0f}\n")


def train() -> None:
    sets = [*BUDGET, f"max_steps={TRAIN_STEPS}"]
    for name in ("prover", "reasoner"):
        out = RUNS / name
        if (out / "final" / "gram_training.json").exists():
            continue
        overrides = [*sets, f"output_dir={out}"] + ([f"model={DEFAULT_GRAM}"] if name == "reasoner" else [])
        run([*GRAM_CLI, "train", f"train_configs/{name}.yaml", *(x for o in overrides for x in ("--set", o))],
            RUNS / f"{name}_wall_seconds.txt")
    if not (RUNS / "self_train" / "summary.json").exists():
        overrides = [*SELF_TRAIN, f"reasoner={RUNS / 'reasoner' / 'final'}", f"prover={RUNS / 'prover' / 'final'}",
                     f"output_dir={RUNS / 'self_train'}"]
        run([*GRAM_CLI, "self-train", "train_configs/self_train.yaml", *(x for o in overrides for x in ("--set", o))],
            RUNS / "self_train_wall_seconds.txt")


def evaluate_row(row: Row) -> None:
    from gram_ray.eval.run import EvalConfig, evaluate
    from gram_ray.reasoning import SamplingConfig
    from gram_ray.scorer import ScorerConfig

    for b in BENCHMARKS:
        out = RUNS / "eval" / row.name / b.name
        if (out / "metrics.json").exists():
            continue
        tokens = row.tokens or EVAL_TOKENS
        flags = f" --max-prompt-tokens {tokens['max_prompt_tokens']} --max-response-tokens {tokens['max_response_tokens']}"
        flags += f" --reasoning --votes {row.votes} --max-new-tokens 128" if row.votes else ""
        print(f"+ gram-ray eval {b.path} --model {row.model} --out {out} --limit {LIMITS[b.name]}{flags}", flush=True)
        started = time.time()
        evaluate(EvalConfig(data=b.path, out=out, limit=LIMITS[b.name], scorer=ScorerConfig(model=str(ROOT / row.model), **tokens),
                            reasoning=row.votes is not None, votes=row.votes or 1, sampling=SamplingConfig(**EVAL_SAMPLING)))
        (out / "wall_seconds.txt").write_text(f"{time.time() - started:.0f}\n")


def collect() -> dict:
    results: dict = {"rows": {}, "self_train": None, "train_seconds": {}}
    for name in ("prover", "reasoner", "self_train"):
        wall = RUNS / f"{name}_wall_seconds.txt"
        results["train_seconds"][name] = int(wall.read_text()) if wall.exists() else None
    summary = RUNS / "self_train" / "summary.json"
    if summary.exists():
        results["self_train"] = json.loads(summary.read_text())
    for row in ROWS:
        benchmarks = {}
        for b in BENCHMARKS:
            path = RUNS / "eval" / row.name / b.name / "metrics.json"
            if path.exists():
                m = json.loads(path.read_text())
                r = m.get("reasoning", {})
                benchmarks[b.name] = {"headline": m["headline"]["value"], "comparisons": m["comparisons"],
                                      "flip_rate": m["pairs"]["flip_rate"], "samples": r.get("samples", 0),
                                      "unparsed": r.get("unparsed", 0), "generated_tokens": r.get("generated_tokens", 0),
                                      "actor_seconds": r.get("actor_seconds", 0.0),
                                      "wall_seconds": int((path.parent / "wall_seconds.txt").read_text())}
        results["rows"][row.name] = {"description": row.description, "model": row.model, "votes": row.votes,
                                     "benchmarks": benchmarks}
    return results


def table(results: dict) -> str:
    heads = [b.name for b in BENCHMARKS]
    sizes = ", ".join(f"{b.name} {LIMITS[b.name]}" + (" prompt(s) × 9 comparisons" if b.name.startswith("rmbench") else " pairs")
                      for b in BENCHMARKS)
    budget = f"questions cut to {EVAL_TOKENS['max_prompt_tokens']} tokens, responses to {EVAL_TOKENS['max_response_tokens']}"
    lines = [f"Headline score per benchmark on the first rows of each ablation slice ({sizes}; {budget}, "
             "unless the row's name gives another response budget); flip rate and "
             "unparsed-sample rate over all comparisons; tokens/s is generated tokens per second of actor time "
             "(one actor, both cores); time is the wall clock of the five evaluations.", "",
             "| row | votes/order | " + " | ".join(heads) + " | mean | flip rate | unparsed | tokens/s | eval time |",
             "|---|---:|" + "---:|" * (len(heads) + 5)]
    for name, r in results["rows"].items():
        rows = r["benchmarks"]
        if not rows:
            continue
        scores = [f"{rows[h]['headline']:.3f}" if h in rows else "–" for h in heads]
        done = len(rows) == len(heads)
        mean = f"{sum(x['headline'] for x in rows.values()) / len(rows):.3f}" if done else "–"
        comparisons = sum(x["comparisons"] for x in rows.values())
        flips = sum((x["flip_rate"] or 0.0) * x["comparisons"] for x in rows.values()) / comparisons
        samples = sum(x["samples"] for x in rows.values())
        unparsed = f"{sum(x['unparsed'] for x in rows.values()) / samples:.3f}" if samples else "–"
        seconds = sum(x["actor_seconds"] for x in rows.values())
        rate = f"{sum(x['generated_tokens'] for x in rows.values()) / seconds:.0f}" if samples and seconds else "–"
        wall = sum(x["wall_seconds"] for x in rows.values())
        lines.append(f"| {name} | {r['votes'] or '–'} | " + " | ".join(scores)
                     + f" | {mean} | {flips:.3f} | {unparsed} | {rate} | {wall / 60:.0f} min |")
    st, secs = results["self_train"], results["train_seconds"]
    minutes = {k: f"{v / 60:.0f} min" if v else "–" for k, v in secs.items()}
    lines += ["", f"Training: prover {minutes['prover']}, reasoner {minutes['reasoner']} ({TRAIN_STEPS} steps of 8 "
              f"pairs each), self-training {minutes['self_train']} in all.", ""]
    per_s = lambda v: f"{v:.0f}" if v else "–"  # noqa: E731
    if st:
        lines += ["| self-training round | pairs judged | kept | kept fraction | rationales written | unparsed samples "
                  "| reasoner tokens/s | prover tokens/s |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in st["rounds"]:
            lines.append(f"| {s['round']} | {s['pairs']} | {s['kept']} | {s['kept_fraction']:.2f} | {s['rationales']} | "
                         f"{s['unparsed_samples']}/{s['samples']} | {per_s(s['reasoner_tokens_per_s'])} | "
                         f"{per_s(s['prover_tokens_per_s'])} |")
    return "\n".join(lines) + "\n"


START, END = "<!-- reasoning-table:start -->", "<!-- reasoning-table:end -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=[r.name for r in ROWS], choices=[r.name for r in ROWS],
                        help="evaluate these rows, in this order")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--no-eval", action="store_true")
    args = parser.parse_args()

    assert DATA.exists(), DATA
    make_splits()
    RUNS.mkdir(parents=True, exist_ok=True)
    if not args.no_train:
        train()
    if not args.no_eval:
        by_name = {r.name: r for r in ROWS}
        for row in (by_name[n] for n in args.rows):  # in the order given
            if (ROOT / row.model).exists():
                evaluate_row(row)
    results = collect()
    publish(RUNS, results, table(results), START, END)
    means = {n: sum(b["headline"] for b in r["benchmarks"].values()) / len(r["benchmarks"])
             for n, r in results["rows"].items() if len(r["benchmarks"]) == len(BENCHMARKS)}
    kept = {f"kept_round{s['round']}": f"{s['kept_fraction']:.2f}" for s in (results["self_train"] or {"rounds": []})["rounds"]}
    print("RESULT " + " ".join([f"{n}={s:.3f}" for n, s in means.items()] + [f"{k}={v}" for k, v in kept.items()]))


if __name__ == "__main__":
    main()
