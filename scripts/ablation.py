"""Train the embedded default GRAM model and measure its ablation table on this machine.

    python scripts/ablation.py                 # splits, every variant, every evaluation, the table
    python scripts/ablation.py --variants gram --no-eval
    python scripts/ablation.py --no-train --no-eval   # only the table, from finished results
    python scripts/ablation.py --local --variants bt_baseline   # a lone GPU box without Ray (as train_default.py --local)
    python scripts/ablation.py --local --variants shipped_default bt_shipped_budget   # BT at the shipped budget (GPU)
    python scripts/ablation.py --variants bt_shipped_budget --snapshot   # commit its newest checkpoint (CPU: ~4 h)
    python scripts/ablation.py --local --whole --variants shipped_default bt_shipped_budget   # the same two judged on
                                               # every benchmark whole (minutes on one GPU; on the 2-core CPU
                                               # JudgeBench's 270 pairs alone take ~20 min a variant)

Every step writes its result atomically and is skipped when that result exists, so an interrupted
run resumes where it stopped. The variants share one backbone (SmolLM2-135M) and one budget
(`BUDGET`: steps, pairs per step, token limits), except the two rows at the shipped default's budget
(`shipped_default`, `bt_shipped_budget`, run only when named); stage 1 is the shipped adapter
`gram_ray/models/stage1-smollm2-135m` (its own command is in MODEL_CARD.md). Training goes through
`gram-ray train`, evaluation through `gram-ray eval`'s function, so the figures are what users get.
Results: runs/ablation/<variant>/final (models), runs/ablation/eval/<variant>/<benchmark>/ (reports);
each finished evaluation's metrics and per-pair predictions are copied to docs/ablation/eval/ (tracked,
so a fresh checkout resumes the table instead of judging again), with docs/ablation/results.json and
table.md; the table is also written into MODEL_CARD.md and README.md between their ablation-table markers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.carried_checkpoint import CarriedRun  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
RUNS = ROOT / "runs" / "ablation"
SPLITS = ROOT / "runs" / "data"
ARCHIVE = ROOT / "docs" / "ablation"
TRAINED = ROOT / "checkpoints" / "ablation"  # trained variants' adapters (tracked: a fresh checkout evaluates them)
# An unfinished variant's newest checkpoint, committed (`--snapshot`) so that a run longer than a session
# (bt_shipped_budget on the 2-core CPU) continues on a fresh clone; removed once the variant is archived.
CARRIED = ROOT / "checkpoints" / "ablation_runs"
# What a trained variant's adapter needs; the tokenizer and chat template come from the backbone.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "gram_training.json")
GRAM_CLI = [sys.executable, "-m", "gram_ray.cli"]  # the `gram-ray` command of this interpreter (also where it is not installed)
STAGE1 = "gram_ray/models/stage1-smollm2-135m"

# One budget for every ablation variant, the shipped model's recipe (scripts/train_default.py) cut to
# 60 optimizer steps: 8 pairs per step (1 pair per micro-batch x 8 accumulated; each pair in both
# orders for the generative variants), AdamW lr 1e-3 with a 3-step warm-up and cosine decay to 0 at
# step 60 (480 pairs), questions and responses cut to 256 tokens, LoRA r=16 on the last 8 of 30
# layers, one Ray Train worker holding every CPU core. Same data order for every variant.
BUDGET = [
    "num_workers=1", "max_steps=60", "batch_size=1", "grad_accum=8", "lr=1.0e-3", "warmup_ratio=0.05",
    "scheduler=cosine", "max_prompt_tokens=256", "max_response_tokens=256", "checkpoint_every=10", "log_every=5",
    "resume_from=latest",  # an interrupted variant continues from its newest checkpoint (~6 min apart)
]


@dataclass
class Variant:
    name: str
    description: str
    model: str  # what is evaluated: a spec, or the run's final model
    config: str | None = None  # train_configs/*.yaml; None: evaluated as is
    overrides: list[str] = field(default_factory=list)
    mix: str | None = None  # train on scripts/hh_adaptation_trial.py's data mix of this name, not labeled_train


VARIANTS = [
    Variant("zero_shot", "SmolLM2-135M-Instruct as a judge, no training", "smollm2-135m"),
    Variant("finetune_only", "stage 2 only (verdict loss, ε=0.1) from the backbone", "runs/ablation/finetune_only/final",
            "train_configs/finetune.yaml", ["model=smollm2-135m"]),
    Variant("gram", "GRAM: stage 1 (unlabeled pairs) + stage 2 (ε=0.1)", "runs/ablation/gram/final",
            "train_configs/finetune.yaml", [f"model={STAGE1}"]),
    Variant("gram_no_smoothing", "GRAM with ε=0 (plain cross-entropy)", "runs/ablation/gram_no_smoothing/final",
            "train_configs/finetune.yaml", [f"model={STAGE1}", "label_smoothing=0.0"]),
    Variant("bt_baseline", "Bradley-Terry scalar head on the backbone", "runs/ablation/bt_baseline/final",
            "train_configs/bt_baseline.yaml", ["model=smollm2-135m"]),
    # At the shipped default's budget (720 steps x 8 pairs = 5,760, 12x the rows above): the shipped
    # GRAM judge as it is, and BT trained as long. Not in the default run order: BT alone is ~4 h on the
    # 2-core CPU and a few minutes on one GPU (`--local --variants shipped_default bt_shipped_budget`).
    Variant("shipped_default", "the shipped default: GRAM (stage 1 + 2, ε=0.1) on 5,760 pairs", "gram_ray/models/default"),
    # Same pairs in the same order as the shipped default (its hh-harmless mix), same steps and schedule.
    Variant("bt_shipped_budget", "Bradley-Terry on the shipped default's 5,760 pairs (its hh-harmless mix)",
            "runs/ablation/bt_shipped_budget/final", "train_configs/bt_baseline.yaml",
            ["model=smollm2-135m", "max_steps=720", "batch_size=8", "grad_accum=1", "warmup_ratio=0.03",
             "checkpoint_every=30"],  # ~10 min apart on the 2-core CPU
            mix="hh_from_stage1"),
]


@dataclass
class Benchmark:
    name: str
    path: Path
    limit: int  # rows (RM-Bench: prompts, 9 comparisons each)
    whole: int | None = None  # --whole: rows judged (None: every row)


# In-domain rows 0-299 of the held-out split (prompts never trained on; the shipped model's report rows
# start there too); every variant is judged on the same rows, beside the length baseline on them.
# --whole judges each set whole, except in domain: rows 0-499, the shipped default's report rows (its rows
# 500-799 chose it and fitted its calibration, so they would favour it).
BENCHMARKS = [
    Benchmark("labeled_heldout", SPLITS / "labeled_heldout.jsonl.gz", 300, 500),
    Benchmark("hh_heldout", SPLITS / "hh_heldout.jsonl.gz", 100),
    Benchmark("rmbench_code", DATA / "dev_rmbench_code.jsonl.gz", 8),
    Benchmark("rmbench_safety_refuse", DATA / "dev_rmbench_safety_refuse.jsonl.gz", 8),
    Benchmark("judgebench", DATA / "dev_judgebench_claude.jsonl.gz", 60),
]
# Run order (the paper's claims first: GRAM vs fine-tuning alone vs BT); table order is VARIANTS.
RUN_ORDER = ["gram", "finetune_only", "bt_baseline", "zero_shot", "gram_no_smoothing"]
EVAL_TOKENS = {"max_prompt_tokens": 256, "max_response_tokens": 256}  # the budgets every variant trains at


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def local_training(local: bool) -> list[str]:
    """--local: the training loop in the `gram-ray train` process (launcher: local), on CUDA when
    there is one: the same loop, budget and data order as under Ray Train."""
    return ["launcher=local", f"use_gpu={str(cuda()).lower()}"] if local else []


def local_eval_flags() -> list[str]:
    """`gram-ray eval` flags for --local: score in this process; on CUDA in fp32, as the CPU service
    scores (there `dtype: auto` would be bf16), on a CPU with the scorer's own `dtype: auto`."""
    return ["--num-actors", "0", *(["--dtype", "float32"] if cuda() else [])]


def make_splits() -> None:
    """Held-out splits by prompt: 5% of train_labeled's prompts, 30% of adapt_hh_harmless's."""
    for source, name, fraction in (("train_labeled", "labeled", 0.05), ("adapt_hh_harmless", "hh", 0.3)):
        if (SPLITS / f"{name}_heldout.jsonl.gz").exists():
            continue
        run([*GRAM_CLI, "split", str(DATA / f"{source}.jsonl.gz"), "--train-out", str(SPLITS / f"{name}_train.jsonl.gz"),
             "--heldout-out", str(SPLITS / f"{name}_heldout.jsonl.gz"), "--heldout-fraction", str(fraction)])


def trained(v: Variant) -> Path | None:
    """The variant's trained model: this run's, else the committed copy (None: not trained yet)."""
    for path in (ROOT / v.model, TRAINED / v.name):
        if (path / "adapter_model.safetensors").is_file():
            return path
    return None


def carried(v: Variant) -> CarriedRun:
    """The variant's run and its committed copy, which carries the training seconds spent so far."""
    return CarriedRun(RUNS / v.name, CARRIED / v.name, files=("wall_seconds.txt",))


def train_variant(v: Variant, local: bool = False) -> None:
    if v.config is None or trained(v):
        return
    # This machine's newest checkpoint, else the committed one (a fresh clone); none: from the start.
    resume = carried(v).start()
    spent = RUNS / v.name / "wall_seconds.txt"
    data = SPLITS / "labeled_train.jsonl.gz"
    if v.mix is not None:
        from scripts.hh_adaptation_trial import make_data, mix_path  # imports this module: not at the top

        make_data(v.mix)
        data = mix_path(v.mix)
    cmd = [*GRAM_CLI, "train", v.config]
    for item in [f"data=[{data}]", *BUDGET, f"output_dir=runs/ablation/{v.name}", *v.overrides,
                 *local_training(local), *([f"resume_from={resume}"] if resume else [])]:
        cmd += ["--set", item]
    # Seconds add up over segments: an interrupted variant resumes from its checkpoint,
    # and its training time is every segment's, not the last one's. A SIGKILL loses its segment's time.
    started = time.time()
    try:
        run(cmd)
    finally:
        from gram_ray.data import atomic_writer

        before = float(spent.read_text()) if spent.is_file() else 0.0
        with atomic_writer(spent) as f:
            f.write(f"{before + time.time() - started:.0f}\n")


def eval_dir(whole: bool) -> str:
    """Where evaluations live under RUNS and ARCHIVE: on the ablation's rows, or on the whole sets."""
    return "eval_whole" if whole else "eval"


def finished(variant: str, benchmark: str, whole: bool = False) -> Path | None:
    """Where this variant's finished evaluation on this benchmark is (this run's, else the archived one)."""
    for base in (RUNS / eval_dir(whole), ARCHIVE / eval_dir(whole)):
        if (base / variant / benchmark / "metrics.json").is_file():
            return base / variant / benchmark
    return None


def archive() -> None:
    """Copy trained adapters into checkpoints/ablation/, finished evaluations (metrics, predictions; no
    plots) and training times into docs/ablation/."""
    for v in VARIANTS:
        final = ROOT / v.model
        if v.config is not None and (final / "adapter_model.safetensors").is_file() and not (TRAINED / v.name).exists():
            tmp = TRAINED / f".{v.name}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for item in final.iterdir():
                if item.name in ADAPTER_FILES or item.suffix == ".safetensors":
                    shutil.copyfile(item, tmp / item.name)
            tmp.rename(TRAINED / v.name)
        if (TRAINED / v.name).exists():  # finished: its carried checkpoint has done its job
            shutil.rmtree(CARRIED / v.name, ignore_errors=True)
        wall = RUNS / v.name / "wall_seconds.txt"
        if wall.is_file():
            (ARCHIVE / v.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(wall, ARCHIVE / v.name / "wall_seconds.txt")
        for b, kind in itertools.product(BENCHMARKS, (eval_dir(False), eval_dir(True))):
            src, dst = RUNS / kind / v.name / b.name, ARCHIVE / kind / v.name / b.name
            if (src / "metrics.json").is_file():
                dst.mkdir(parents=True, exist_ok=True)
                for name in ("predictions.jsonl", "metrics.json"):  # metrics.json last: it marks a finished copy
                    shutil.copyfile(src / name, dst / name)


def evaluate_variant(v: Variant, local: bool = False, whole: bool = False) -> None:
    """Every benchmark not finished yet, on the ablation's rows or (``whole``) on each set whole.
    --local: scored in this process (no Ray), in fp32 as the CPU rows were, so figures from either
    machine share one table."""
    from gram_ray.eval.run import EvalConfig, evaluate
    from gram_ray.scorer import ScorerConfig

    model = str(trained(v) or v.model)
    where = {"num_actors": 0} if local else {}
    dtype = "float32" if local else "auto"
    for b in BENCHMARKS:
        out = RUNS / eval_dir(whole) / v.name / b.name
        if finished(v.name, b.name, whole):
            continue
        limit = b.whole if whole else b.limit
        print(f"+ gram-ray eval {b.path} --model {model} --out {out}" + (f" --limit {limit}" if limit else "")
              + f" --max-prompt-tokens {EVAL_TOKENS['max_prompt_tokens']} --max-response-tokens "
              f"{EVAL_TOKENS['max_response_tokens']}", flush=True)
        started = time.time()
        evaluate(EvalConfig(data=b.path, out=out, limit=limit, scorer=ScorerConfig(model=model, dtype=dtype, **EVAL_TOKENS),
                            **where))
        print(f"  {b.name}: {time.time() - started:.0f} s", flush=True)


def collect(whole: bool = False) -> dict:
    from gram_ray.eval.metrics import pair_calibration

    results: dict = {}
    baseline: dict = {}
    for v in VARIANTS:
        row = {}
        for b in BENCHMARKS:
            done = finished(v.name, b.name, whole)
            if done:
                path = done / "metrics.json"
                m = json.loads(path.read_text())
                # ECE from the predictions, so reports written before pair_calibration agree with it.
                predictions = [json.loads(x) for x in (path.parent / "predictions.jsonl").read_text().splitlines()]
                ece, _ = pair_calibration([p["p_a_better"] for p in predictions], [p["label"] == "A" for p in predictions])
                row[b.name] = {"headline": m["headline"]["value"], "pairs": m["comparisons"],
                               "accuracy": m["pairs"]["accuracy"], "flip_rate": m["pairs"]["flip_rate"], "ece": ece,
                               "hard": m["rmbench"]["hard"] if "rmbench" in m else None}
                # Every variant is judged on the same rows, so any report's length baseline is the baseline's row.
                lb = m["length_baseline"]
                baseline.setdefault(b.name, {"headline": lb["headline"]["value"], "pairs": m["comparisons"],
                                             "accuracy": lb["pairs"]["accuracy"], "flip_rate": 0.0, "ece": None,
                                             "hard": lb["rmbench"]["hard"] if "rmbench" in lb else None})
        if not row:  # never evaluated (e.g. a variant outside the default run order): no row of dashes
            continue
        wall = ARCHIVE / v.name / "wall_seconds.txt"
        results[v.name] = {"description": v.description, "train_seconds": int(wall.read_text()) if wall.exists() else None,
                           "benchmarks": row}
    results["longer_response"] = {"description": "prefer the response with more characters left after both are cut "
                                  f"to {EVAL_TOKENS['max_response_tokens']} tokens (no model)", "train_seconds": None,
                                  "benchmarks": baseline}
    return results


def table(results: dict) -> str:
    def cell(row: dict, key: str) -> str:
        return "–" if row.get(key) is None else f"{row[key]:.3f}"

    heads = [b.name for b in BENCHMARKS]
    lines = [
        "Headline score per benchmark (accuracy; RM-Bench: mean of hard/normal/easy; JudgeBench: both-order rule), "
        "then position-flip rate and ECE averaged over the five sets.", "",
        "| variant | " + " | ".join(heads) + " | mean | flip rate | ECE | train time |",
        "|---|" + "---:|" * (len(heads) + 4),
    ]
    for name, r in results.items():
        rows = r["benchmarks"]
        scores = [rows[h]["headline"] if h in rows else None for h in heads]
        done = [s for s in scores if s is not None]
        flips = [rows[h]["flip_rate"] for h in heads if h in rows and rows[h]["flip_rate"] is not None]
        eces = [rows[h]["ece"] for h in heads if h in rows and rows[h]["ece"] is not None]
        mean = lambda xs: f"{sum(xs) / len(xs):.3f}" if xs else "–"  # noqa: E731
        minutes = f"{r['train_seconds'] / 60:.0f} min" if r["train_seconds"] else "–"
        lines.append(f"| {name} | " + " | ".join("–" if s is None else f"{s:.3f}" for s in scores)
                     + f" | {mean(done) if len(done) == len(heads) else '–'} | {mean(flips)} | {mean(eces)} | {minutes} |")
    lines += ["", "Per benchmark: accuracy / flip rate / ECE (RM-Bench: and its *hard* column)", "",
              "| variant | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for name, r in results.items():
        rows = r["benchmarks"]
        lines.append(f"| {name} | " + " | ".join(
            f"{cell(rows[h], 'accuracy')} / {cell(rows[h], 'flip_rate')} / {cell(rows[h], 'ece')}"
            + (f" (hard {rows[h]['hard']:.3f})" if rows[h].get("hard") is not None else "") if h in rows else "–"
            for h in heads) + " |")
    return "\n".join(lines) + "\n"


# The paper's claims as paired comparisons: (judge, against), on the plain-pair sets both judged.
CLAIMS = [("gram", "finetune_only"), ("gram", "gram_no_smoothing"), ("gram", "bt_baseline"),
          ("shipped_default", "bt_shipped_budget")]


def correct_by_row(predictions: Path) -> dict[tuple, bool]:
    """Whether each row of a predictions.jsonl was judged right, keyed by its place in the file and
    pair (ids repeat: one prompt, several pairs), so that two judges' rows can be paired."""
    from gram_ray.judge import verdict

    rows = [json.loads(x) for x in predictions.read_text().splitlines() if x.strip()]
    return {(r.get("line"), r.get("i"), r.get("j"), r["id"]): verdict(r["p_a_better"]) == r["label"] for r in rows}


def paired_differences(whole: bool = False) -> str:
    """Accuracy differences with paired-bootstrap intervals: the same rows, so far tighter than the table's.
    On the ablation's rows the plain-pair sets only (RM-Bench's and JudgeBench's 60-72 comparisons say
    little); on the whole sets every set, by pair accuracy (RM-Bench: its overall score; JudgeBench:
    the order-averaged verdict, not its both-order rule)."""
    from gram_ray.eval.metrics import paired_accuracy_difference

    def right(variant: str, benchmark: str) -> dict[tuple, bool] | None:
        done = finished(variant, benchmark, whole)
        return None if done is None else correct_by_row(done / "predictions.jsonl")

    lines = []
    for b in [b.name for b in BENCHMARKS] if whole else ["labeled_heldout", "hh_heldout"]:
        for a, c in CLAIMS:
            ra, rc = right(a, b), right(c, b)
            if ra and rc and ra.keys() == rc.keys():
                diff, low, high = paired_accuracy_difference([ra[k] for k in ra], [rc[k] for k in ra])
                lines.append(f"| {b} | {a} − {c} | {diff:+.3f} | {low:+.3f} to {high:+.3f} | {len(ra)} |")
    if not lines:
        return ""
    what = " (pair accuracy: RM-Bench's overall score, JudgeBench's order-averaged verdict)" if whole else ""
    return "\n".join(["", f"Paired accuracy differences on the same rows{what} (95% paired bootstrap, 2,000 resamples)", "",
                      "| set | judges | accuracy difference | 95% interval | pairs |", "|---|---|---:|---|---:|", *lines]) + "\n"


TABLE_START, TABLE_END = "<!-- ablation-table:start -->", "<!-- ablation-table:end -->"
WHOLE_START, WHOLE_END = "<!-- ablation-whole:start -->", "<!-- ablation-whole:end -->"


def write_table_into(path: Path, text: str, start: str = TABLE_START, end: str = TABLE_END) -> None:
    """Replace what stands between the ``start`` and ``end`` markers in ``path`` (MODEL_CARD.md, README.md)."""
    from gram_ray.data import atomic_writer

    doc = path.read_text()
    if start not in doc or end not in doc:
        raise ValueError(f"{path}: no {start} … {end} markers")
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    with atomic_writer(path) as f:
        f.write(f"{head}{start}\n{text}{end}{tail}")


def publish(runs: Path, results: dict, text: str, start: str = TABLE_START, end: str = TABLE_END,
            stem: str = "") -> None:
    """``runs``/{stem}results.json and {stem}table.md, the table into MODEL_CARD.md and README.md, and on stdout."""
    from gram_ray.data import atomic_writer

    with atomic_writer(runs / f"{stem}results.json") as f:
        json.dump(results, f, indent=2)
    with atomic_writer(runs / f"{stem}table.md") as f:
        f.write(text)
    for doc in (ROOT / "MODEL_CARD.md", ROOT / "README.md"):
        write_table_into(doc, text, start, end)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=RUN_ORDER, choices=[v.name for v in VARIANTS],
                        help=f"run in this order (default: {' '.join(RUN_ORDER)})")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--snapshot", action="store_true",
                        help="only copy each named variant's newest checkpoint into checkpoints/ablation_runs/ (commit it)")
    parser.add_argument("--whole", action="store_true",
                        help="judge on every benchmark whole (in domain: rows 0-499) instead of the ablation's rows; "
                             "its own table (docs/ablation/whole_table.md, the cards' ablation-whole markers)")
    parser.add_argument("--local", action="store_true",
                        help="without Ray: train with launcher=local (CUDA when present) and score in this process, fp32")
    args = parser.parse_args()

    by_name = {v.name: v for v in VARIANTS}
    if args.snapshot:
        for name in args.variants:
            carried(by_name[name]).snapshot()
        return
    make_splits()
    for name in args.variants:  # train then evaluate each variant, so partial runs give whole rows
        if not args.no_train:
            train_variant(by_name[name], args.local)
        if not args.no_eval:
            evaluate_variant(by_name[name], args.local, args.whole)
    archive()
    results = collect(args.whole)
    if args.whole:
        intro = ("On every benchmark whole (in domain: held-out rows 0-499; RM-Bench: all 228 code and 284 "
                 "safety-refuse prompts; JudgeBench: all 270 pairs; hh-harmless: all 285 held-out rows).\n\n")
        publish(ARCHIVE, results, intro + table(results) + paired_differences(True), WHOLE_START, WHOLE_END, "whole_")
    else:
        publish(ARCHIVE, results, table(results) + paired_differences())
    scores = {n: sum(b["headline"] for b in r["benchmarks"].values()) / len(r["benchmarks"])
              for n, r in results.items() if len(r["benchmarks"]) == len(BENCHMARKS)}
    print("RESULT " + " ".join(f"{n}={s:.3f}" for n, s in scores.items()))


if __name__ == "__main__":
    main()
