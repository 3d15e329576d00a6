"""Train the shipped `default` GRAM judge: the long stage-2 run, resumable across machines and sessions.

    python scripts/train_default.py              # train (continue from the newest checkpoint), decide, publish if it passes
    python scripts/train_default.py --snapshot   # copy the newest checkpoint into checkpoints/default (commit it)
    python scripts/train_default.py --decide     # judge the newest checkpoint by the bar the shipped adapter
                                                 # passed, beside it (docs/default_eval/reproduction/);
                                                 # exit status 1 when it does not pass
    python scripts/train_default.py --publish    # export the newest checkpoint as gram_ray/models/default
    python scripts/train_default.py --report     # the held-out curve as a table and plot in MODEL_CARD.md
    python scripts/train_default.py --report --curve docs/default_eval/curve.jsonl  # the shipped run's curve
    python scripts/train_default.py --calibrate  # fit the shipped model's calibration, report held-out rows 0-499
    python scripts/train_default.py --evaluate   # the out-of-distribution sets, beside the length baseline
    python scripts/train_default.py --train      # only train
    python scripts/train_default.py --steps 1440 # a longer run (continues the committed step-720 checkpoint)
    make model                                   # train, snapshot, decide; if it passes: publish, calibrate,
                                                 # report, evaluate
    python scripts/train_default.py --local      # the same without Ray, in this process (how the shipped run was
                                                 # made on one H100: `launcher=local use_gpu=true`; evaluation
                                                 # with `--num-actors 0`, fp32 as the CPU service scores)

Recipe (MODEL_CARD.md): stage 2 from the shipped stage-1 adapter (`gram_ray/models/stage1-smollm2-135m`),
verdict loss with label smoothing 0.1, each pair in both orders, 8 pairs per step (one micro-batch),
720 steps, lr 1e-3 with a 3% warm-up and cosine decay, questions and responses cut to 256 tokens (the
budgets the service then scores at, read from the model's gram_training.json), on the `hh_from_stage1`
mix of scripts/hh_adaptation_trial.py: 4,488 labeled pairs and the 561 hh-harmless adaptation rows
twice (5,610 rows, made on first use from the by-prompt splits). That trial passed the bar set before
it ran (scripts/hh_adaptation_trial.py BAR; docs/trials/hh_from_stage1/) and its adapter, trained on
one H200 (`scripts/lone_gpu_default.sh trial`), is the shipped one. The run writes
`runs/default/curve.jsonl` (accuracy, position-flip rate and ECE on 120 in-domain held-out pairs every
`EVAL_EVERY` steps, beside the "longer visible response" baseline on the same rows).

Resuming: a run continues from, in this order, the newest checkpoint under runs/default (this machine),
or the committed `checkpoints/default/` (a fresh clone: adapter, optimizer, schedule and data
position, a few MB). `--snapshot` refreshes that committed copy; commit it before a session ends.
The GPU call that made the shipped adapter did not bring its optimizer state back, so the committed
checkpoint is the same recipe's CPU run (fp32, no Ray), carried across sessions: `make model` on a
fresh clone continues it to step 720, judges it on the rows and by the bar the shipped adapter was
chosen by (`--decide`), and only if it passes publishes, calibrates and evaluates *that* run's
adapter in place of the shipped one. On a 2-core CPU a step takes ~25 s, on one H100 or H200 ~0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import hh_adaptation_trial as trial  # noqa: E402
from scripts.ablation import (  # noqa: E402
    DATA,
    GRAM_CLI,
    SPLITS,
    STAGE1,
    correct_by_row,
    cuda,
    local_eval_flags,
    make_splits,
    write_table_into,
)
from scripts.ablation import local_training as ablation_local_training  # noqa: E402
from scripts.carried_checkpoint import CarriedRun, step_of  # noqa: E402
from scripts.hh_adaptation_trial import make_data, mix_path  # noqa: E402

RUN = ROOT / "runs" / "default"
COMMITTED = ROOT / "checkpoints" / "default"
CARRIED = CarriedRun(RUN, COMMITTED)
SHIPPED = ROOT / "gram_ray" / "models" / "default"
STEPS = 720  # the shipped run: 5,760 pairs seen (the mix once, plus 150 rows of a second pass), ~4 min on one GPU
MIX = "hh_from_stage1"  # the trial whose data mix the shipped run trains on
EVAL_EVERY = 100  # a curve point costs ~7 min of evaluation on 2 cores; every 100 steps keeps that under a quarter of the run
RECIPE = [
    f"model={STAGE1}", f"data=[{mix_path(MIX)}]", f"eval_data={SPLITS / 'labeled_heldout.jsonl.gz'}",
    f"output_dir={RUN}", "num_workers=1", f"max_steps={STEPS}", "batch_size=8", "grad_accum=1", "lr=1.0e-3",
    "warmup_ratio=0.03", "scheduler=cosine", "label_smoothing=0.1", "max_prompt_tokens=256", "max_response_tokens=256",
    "checkpoint_every=10", "keep_checkpoints=2", "log_every=5", f"eval_every={EVAL_EVERY}", "eval_limit=120",
    "max_failures=2",
]
# --local: no Ray anywhere (a lone GPU machine whose image has torch, transformers and peft): the
# training loop in this process (on CUDA when there is one), evaluation in this process too.
LOCAL = False


def local_training() -> list[str]:
    # On a GPU a step takes ~0.1 s: checkpoints and curve points every few hundred steps, not every 10 / 100.
    if not LOCAL:
        return []
    return [*ablation_local_training(True), *(["checkpoint_every=100", "eval_every=250"] if cuda() else [])]


def local_eval() -> list[str]:
    return local_eval_flags() if LOCAL else []


def resume_point() -> Path | None:
    return CARRIED.resume_point()


def train(extra: list[str]) -> None:
    make_data(MIX)  # the by-prompt splits, then the mix (each made once)
    resume = CARRIED.start()
    cmd = [*GRAM_CLI, "train", "train_configs/finetune.yaml"]
    for item in [*RECIPE, *local_training(), *([f"resume_from={resume}"] if resume else []), *extra]:
        cmd += ["--set", item]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def snapshot() -> None:
    """Copy the newest checkpoint (and the curve so far) into checkpoints/default, atomically."""
    CARRIED.snapshot()


def export() -> tuple[Path, int]:
    """The newest checkpoint (local, else committed) as an adapter in runs/default/export/final, and its step."""
    source = resume_point()
    if source is None:
        raise SystemExit(f"no checkpoint under {RUN} or {COMMITTED}")
    out = RUN / "export"
    cmd = [*GRAM_CLI, "model", "export-checkpoint", "train_configs/finetune.yaml", str(source), "--out", str(out)]
    for item in [*RECIPE, *local_training()]:  # the record says how the run was made
        cmd += ["--set", item]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return out / "final", step_of(source)


def publish(exported: tuple[Path, int] | None = None) -> None:
    """Copy an exported adapter (`export()`'s result; by default export the newest checkpoint now) into
    the shipped model's folder."""
    final, step = exported or export()
    shutil.rmtree(SHIPPED, ignore_errors=True)
    SHIPPED.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors", "gram_training.json"):
        shutil.copy(final / name, SHIPPED / name)
    print(f"gram_ray/models/default ← {final} (step {step})")


# The shipped adapter's own decision evaluations (its run of this recipe on one H200): the rows and
# the bar a rerun of the recipe is held to before it may replace it.
SHIPPED_RUN = ROOT / "docs" / "trials" / MIX
DECISION = ROOT / "docs" / "default_eval" / "reproduction"


def decide() -> tuple[dict, tuple[Path, int]]:
    """Judge this run's newest checkpoint on the rows the shipped adapter was chosen on (in-domain
    selection rows 500-799, the hh selection split; raw, 256-token budgets) by the same BAR, with
    paired accuracy differences against the shipped run on the same rows. Writes
    docs/default_eval/reproduction/ (decision.json, each evaluation's predictions); `ship` says
    whether the run may be published. Returns the decision and the adapter it judged (for `publish`)."""
    from gram_ray.data import atomic_writer
    from gram_ray.eval.metrics import paired_accuracy_difference

    make_data(MIX)
    adapter, step = export()
    name = f"reproduction_step{step}"  # a later step is judged afresh, not read from an older one's cache
    metrics = {rows: trial.evaluate(RUN, name, str(adapter), rows, LOCAL) for rows in trial.ROWS}
    shipped = json.loads((SHIPPED_RUN / "decision.json").read_text())
    sel, hh = metrics["selection"]["pairs"], metrics["hh_select"]["pairs"]
    hh_length = metrics["hh_select"]["length_baseline"]["pairs"]["accuracy"]
    checks = trial.bar_checks(sel, hh["accuracy"], hh_length, shipped["hh_select"]["default"])
    DECISION.mkdir(parents=True, exist_ok=True)
    against_shipped = {}
    for rows in trial.ROWS:
        predictions = RUN / "eval" / name / rows / "predictions.jsonl"
        mine, theirs = correct_by_row(predictions), correct_by_row(SHIPPED_RUN / f"adapted_{rows}.predictions.jsonl")
        if mine.keys() != theirs.keys():
            raise SystemExit(f"{predictions}: not the rows the shipped run was judged on")
        diff, low, high = paired_accuracy_difference([mine[k] for k in mine], [theirs[k] for k in mine])
        against_shipped[rows] = {"difference": diff, "ci95": [low, high], "n": len(mine)}
        with atomic_writer(DECISION / f"{rows}.predictions.jsonl") as f:
            f.write(predictions.read_text())
    decision = {
        "step": step, "bar": trial.BAR, "checks": checks, "ship": all(checks.values()),
        "selection": {k: sel[k] for k in ("n", "accuracy", "accuracy_ci95", "flip_rate", "ece")},
        "hh_select": {"n": hh["n"], "accuracy": hh["accuracy"], "flip_rate": hh["flip_rate"], "length_baseline": hh_length,
                      "replaced_default": shipped["hh_select"]["default"]},
        "shipped_run": {"selection": shipped["selection"], "hh_select": shipped["hh_select"]["adapted"]},
        "accuracy_minus_shipped_run": against_shipped,
        "length_split": {rows: metrics[rows].get("length_split") for rows in trial.ROWS},
    }
    save_json(DECISION / "decision.json", decision)
    print(json.dumps(decision, indent=2))
    return decision, (adapter, step)


CURVE_START, CURVE_END = "<!-- default-curve:start -->", "<!-- default-curve:end -->"
CURVE_PNG = ROOT / "docs" / "default_curve.png"


SHIPPED_CURVE = ROOT / "docs" / "default_eval" / "curve.jsonl"  # the shipped adapter's run (H200)


def curve_rows(path: Path | None = None) -> list[dict]:
    """The held-out curve: `path`, else this machine's run so far, else the committed checkpoint's."""
    for candidate in ([path] if path else [RUN / "curve.jsonl", COMMITTED / "curve.jsonl"]):
        if candidate.is_file():
            return [json.loads(line) for line in candidate.read_text().splitlines() if line.strip()]
    return []


def report(path: Path | None = None) -> None:
    """The curve as a table between the default-curve markers of MODEL_CARD.md, and a plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gram_ray.data import atomic_writer
    from scripts.ablation import write_table_into

    rows = curve_rows(path)
    if not rows:
        raise SystemExit("no curve yet (runs/default/curve.jsonl or checkpoints/default/curve.jsonl)")
    lines = ["| step | pairs seen | train loss | held-out accuracy (95% CI) | flip rate | ECE | longer-response baseline | n |",
             "|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        low, high = r["accuracy_ci95"]
        lines.append(f"| {r['step']} | {r['pairs_seen']} | {r['train_loss']:.3f} | {r['accuracy']:.3f} ({low:.3f}–{high:.3f}) | "
                     f"{r['flip_rate']:.3f} | {r['ece']:.3f} | {r['length_baseline']:.3f} | {r['n']} |")
    CURVE_PNG.parent.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    pairs = [r["pairs_seen"] for r in rows]
    ax.plot(pairs, [r["accuracy"] for r in rows], marker="o", label="held-out accuracy")
    ax.fill_between(pairs, [r["accuracy_ci95"][0] for r in rows], [r["accuracy_ci95"][1] for r in rows], alpha=0.2)
    ax.plot(pairs, [r["flip_rate"] for r in rows], marker="s", label="position-flip rate")
    ax.axhline(rows[-1]["length_baseline"], color="grey", linestyle="--", linewidth=1, label="longer-response baseline")
    ax.set_xlabel("labeled pairs seen (each in both orders)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    tmp = CURVE_PNG.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.rename(CURVE_PNG)
    text = "\n".join(lines) + "\n\n![held-out curve](docs/default_curve.png)\n"
    write_table_into(ROOT / "MODEL_CARD.md", text, CURVE_START, CURVE_END)
    with atomic_writer(RUN.parent / "default_curve.md") as f:
        f.write(text)
    print(text)


# The in-domain held-out split (prompts never trained on) is cut in two: rows [0, 500) are the
# ones every held-out figure is reported on, rows [500, 800) are the calibration rows.
HELDOUT = SPLITS / "labeled_heldout.jsonl.gz"
REPORT_ROWS, CALIBRATION_ROWS = (0, 500), (500, 300)
EVALS = RUN / "eval"
# Out of distribution, each set whole, beside the length baseline on the same rows: a prefix of 20
# RM-Bench prompts (9 comparisons each) gave intervals of ±0.1, and JudgeBench's rows are grouped by
# source, so a prefix would hold mmlu-pro only. The whole RM-Bench slices (4,608 comparisons) take
# 82 s of scoring on one H200 (2026-11-28, beside another run; `bash scripts/lone_gpu_default.sh evaluate`);
# on the 2-core CPU, hours (JudgeBench's 270 pairs took 40 min there).
OOD = [
    ("hh_heldout", SPLITS / "hh_heldout.jsonl.gz", None),
    ("rmbench_code", DATA / "dev_rmbench_code.jsonl.gz", None),
    ("rmbench_safety_refuse", DATA / "dev_rmbench_safety_refuse.jsonl.gz", None),
    ("judgebench", DATA / "dev_judgebench_claude.jsonl.gz", None),
]
EVAL_START, EVAL_END = "<!-- default-eval:start -->", "<!-- default-eval:end -->"


def calibrate(reuse: bool = False) -> None:
    """Judge held-out rows [0, 800) once with raw probabilities; fit the calibration on rows
    [500, 800) into the shipped model; report rows [0, 500) raw and calibrated beside the baseline."""
    from gram_ray.eval.calibrate import CalibrateConfig, read_predictions, recalibrated, summarize
    from gram_ray.eval.calibrate import calibrate as fit
    from gram_ray.eval.run import EvalConfig, length_baseline, load_comparisons
    from gram_ray.scorer import ScorerConfig

    make_splits()
    raw = EVALS / "labeled_heldout_raw"
    if not (reuse and (raw / "predictions.jsonl").is_file()):
        run_cli(["eval", str(HELDOUT), "--model", str(SHIPPED), "--no-calibrated", "--out", str(raw),
                 "--limit", str(sum(CALIBRATION_ROWS))])
    # Paths relative to the checkout: calibration.json ships, and records what it was fitted on.
    fitted = fit(CalibrateConfig(model=SHIPPED.relative_to(ROOT), predictions=(raw / "predictions.jsonl").relative_to(ROOT),
                                 offset=CALIBRATION_ROWS[0], limit=CALIBRATION_ROWS[1]))
    rows, applied = read_predictions(raw / "predictions.jsonl")
    start, n = REPORT_ROWS
    rows = rows[start:start + n]
    scorer = ScorerConfig(model=str(SHIPPED))
    _, jobs = load_comparisons(EvalConfig(data=HELDOUT, out=raw, offset=start, limit=n, scorer=scorer))
    report = {
        "rows": list(REPORT_ROWS), "calibration": {k: fitted[k] for k in ("position_bias", "temperature", "fitted_on")},
        "raw": summarize(recalibrated(rows, judge_calibration(), applied)),
        "calibrated": summarize(recalibrated(rows, judge_calibration(fitted), applied)),
        "length_baseline": length_baseline("pairs", jobs, scorer)["pairs"],
    }
    save_json(EVALS / "labeled_heldout.json", report)
    print(json.dumps(report, indent=2))


def judge_calibration(record: dict | None = None):
    from gram_ray.judge import Calibration

    return Calibration() if record is None else Calibration(record["position_bias"], record["temperature"])


def evaluate() -> None:
    """The shipped (calibrated) model on the out-of-distribution sets; then the table in MODEL_CARD.md."""
    make_splits()
    for name, data, limit in OOD:
        out = EVALS / name
        done = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else {}
        # Resumable: a finished set is not judged again (its model recorded as given, relative or not).
        if "model" in done and (ROOT / done["model"]).resolve() == SHIPPED.resolve() and done.get("limit") == limit:
            continue
        run_cli(["eval", str(data), "--model", str(SHIPPED), "--out", str(out), *(["--limit", str(limit)] if limit else [])])
    eval_table()


def eval_table() -> None:
    def acc(m: dict) -> str:
        low, high = m["accuracy_ci95"]
        return f"{m['accuracy']:.3f} ({low:.3f}–{high:.3f})"

    def sources(judgebench: dict, sizes: bool = False) -> str:
        return ", ".join(f"{k}" + (f" ({v['n']})" if sizes else "") + f" {v['accuracy']:.3f}"
                         for k, v in judgebench["sources"].items())

    lines = ["| set | n | `default` | flip rate | ECE | longer-response baseline |", "|---|---:|---|---:|---:|---:|"]
    heldout = EVALS / "labeled_heldout.json"
    if heldout.is_file():
        h = json.loads(heldout.read_text())
        for kind in ("raw", "calibrated"):
            m = h[kind]
            lines.append(f"| in-domain held-out rows {h['rows'][0]}–{h['rows'][1] - 1}, {kind} | {m['n']} | {acc(m)} | "
                         f"{m['flip_rate']:.3f} | {m['ece']:.3f} | {h['length_baseline']['accuracy']:.3f} |")
    for name, _, _ in OOD:
        path = EVALS / name / "metrics.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        pairs, base = m["pairs"], m["length_baseline"]
        if "rmbench" in m:
            r, b = m["rmbench"], base["rmbench"]
            score = f"{r['overall']:.3f} (hard {r['hard']:.3f}, normal {r['normal']:.3f}, easy {r['easy']:.3f})"
            baseline = f"{b['overall']:.3f} (hard {b['hard']:.3f})"
            n = f"{r['domains'][next(iter(r['domains']))]['n']} prompts × 9"
        elif "judgebench" in m:
            j, b = m["judgebench"], base["judgebench"]
            score = f"{j['overall']:.3f} (both-order rule; {sources(j, sizes=True)})"
            baseline, n = f"{b['overall']:.3f} ({sources(b)})", str(pairs["n"])
        else:
            score, baseline, n = acc(pairs), f"{base['pairs']['accuracy']:.3f}", str(pairs["n"])
        lines.append(f"| {name} | {n} | {score} | {pairs['flip_rate']:.3f} | {pairs['ece']:.3f} | {baseline} |")
    text = "\n".join(lines) + "\n"
    write_table_into(ROOT / "MODEL_CARD.md", text, EVAL_START, EVAL_END)
    print(text)


def run_cli(args: list[str]) -> None:
    print("+ gram-ray", " ".join(args), flush=True)
    if args[0] in ("eval", "calibrate"):
        args = [*args, *local_eval()]
    subprocess.run([*GRAM_CLI, *args], check=True, cwd=ROOT)


def save_json(path: Path, record: dict) -> None:
    from gram_ray.data import atomic_writer

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as f:
        json.dump(record, f, indent=2)


NOT_SHIPPED = "the run does not pass the bar the shipped adapter passed: gram_ray/models/default is kept"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", action="store_true", help="only copy the newest checkpoint to checkpoints/default")
    parser.add_argument("--decide", action="store_true",
                        help="only judge the newest checkpoint by the bar the shipped adapter passed, beside it")
    parser.add_argument("--publish", action="store_true", help="only export the newest checkpoint as the shipped model")
    parser.add_argument("--report", action="store_true", help="only write the curve into MODEL_CARD.md")
    parser.add_argument("--curve", type=Path, default=None,
                        help=f"with --report: this curve.jsonl (e.g. {SHIPPED_CURVE.relative_to(ROOT)}, the shipped run's) "
                             "instead of this machine's run or the committed checkpoint's")
    parser.add_argument("--calibrate", action="store_true", help="only fit the shipped model's calibration and report held-out rows")
    parser.add_argument("--reuse", action="store_true", help="with --calibrate: reuse the raw held-out predictions if present")
    parser.add_argument("--evaluate", action="store_true", help="only evaluate the shipped model out of distribution")
    parser.add_argument("--train", action="store_true", help="only train (continue from the newest checkpoint)")
    parser.add_argument("--steps", type=int, default=None, help=f"optimizer steps of the whole run (default {STEPS})")
    parser.add_argument("--local", action="store_true", help="without Ray: train and evaluate in this process (CUDA if present)")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra training overrides")
    args = parser.parse_args()
    global LOCAL
    LOCAL = args.local
    if args.steps is not None:
        RECIPE[:] = [f"max_steps={args.steps}" if item.startswith("max_steps=") else item for item in RECIPE]
    os.chdir(ROOT)
    if args.train:
        train(args.extra)
    elif args.snapshot:
        snapshot()
    elif args.decide:
        if not decide()[0]["ship"]:
            raise SystemExit(NOT_SHIPPED)
    elif args.publish:
        publish()
    elif args.report:
        report(args.curve)
    elif args.calibrate:
        calibrate(reuse=args.reuse)
        eval_table()
    elif args.evaluate:
        evaluate()
    else:
        train(args.extra)
        snapshot()
        decision, exported = decide()
        if not decision["ship"]:
            raise SystemExit(NOT_SHIPPED)
        publish(exported)  # the adapter decide() judged, not a second export
        calibrate()
        report()
        evaluate()


if __name__ == "__main__":
    main()
