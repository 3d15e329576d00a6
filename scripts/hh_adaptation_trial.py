"""Harmlessness adaptation from the shipped `default`, decided by a bar written down before it ran.

    python scripts/hh_adaptation_trial.py                        # split, mix, train (resumable), evaluate, decide
    python scripts/hh_adaptation_trial.py --trial hh_adapt_gentle  # the second trial (see TRIALS)
    python scripts/hh_adaptation_trial.py --no-train             # evaluate and decide from the trained adapter
    python scripts/hh_adaptation_trial.py --trial hh_from_stage1 --local  # on a lone GPU machine, no Ray
                                                                 # (scripts/lone_gpu_default.sh trial)
    python scripts/hh_adaptation_trial.py --trial hh_from_stage1 --snapshot  # copy the newest checkpoint
                                                                 # into checkpoints/hh_from_stage1 (commit it)
    python scripts/hh_adaptation_trial.py --trial hh_from_stage1 --record    # its decision, evaluations and
                                                                 # training metrics into docs/trials/ (commit them)

The shipped judge is at the length baseline on hh-harmless (issue 17). This continues it on the
task-adaptation set the data README offers for that domain, mixed with labeled pairs so that it
keeps its in-domain skill (TRIALS: how much of each, and from which adapter). The hh-harmless *held-out* split (the reported rows) decides nothing:
the decision uses a selection split carved out of hh-harmless's train split, by prompt, and the
in-domain selection rows 500-799 of the labeled held-out split (the rows the default was chosen on).

Results (each written atomically, skipped when it exists): runs/<trial>/final (the adapter),
runs/<trial>/eval/<model>/<rows>/ (reports), runs/<trial>/decision.json. Every trial is judged by
the same BAR; the default's own evaluation on the hh selection split is shared between them.
Training continues from the newest checkpoint: this machine's under runs/<trial>, else the committed
checkpoints/<trial> (`--snapshot` refreshes it), so a CPU run spans sessions and machines.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gram_ray.data import atomic_writer, iter_jsonl, split_by_prompt  # noqa: E402
from scripts.ablation import (  # noqa: E402
    GRAM_CLI,
    ROOT,
    SPLITS,
    STAGE1,
    cuda,
    local_eval_flags,
    local_training,
    make_splits,
    run,
)
from scripts.carried_checkpoint import CarriedRun  # noqa: E402

DEFAULT = "gram_ray/models/default"
HH_TRAIN, HH_SELECT = SPLITS / "hh_adapt_train.jsonl.gz", SPLITS / "hh_adapt_select.jsonl.gz"


@dataclass(frozen=True)
class Trial:
    labeled_per_hh: float  # labeled pairs in the mix per hh-harmless pair (copies counted)
    lr: float
    start: str = DEFAULT  # the adapter training continues from
    steps: int = 80  # of 8 pairs, each in both orders
    warmup_ratio: float = 0.05
    hh_copies: int = 1  # each hh-harmless adaptation row this many times in the mix
    shorter_wins_share: float | None = None  # labeled rows whose better response is the shorter, at least this share


TRIALS = {
    # 2026-11-26: rejected (hh selection +0.143, but in-domain flips 0.083 -> 0.280).
    "hh_adapt": Trial(labeled_per_hh=0.5, lr=5.0e-4),
    # Set after that result and before this one ran: a gentler step (lr 2.5x lower) on a mix that is
    # two-thirds in-domain, so that the judge keeps its order consistency; hh-harmless is then about a
    # third of the 640 pairs seen (~213, against ~427 in the first trial). 2026-11-26: rejected (hh
    # selection 0.471 vs the default's 0.493, in-domain flips 0.083 -> 0.137).
    "hh_adapt_gentle": Trial(labeled_per_hh=2.0, lr=2.0e-4),
    # The shipped default's own recipe (stage 2 from the stage-1 adapter, 720 steps, lr 1e-3, 3%
    # warm-up) with the adaptation rows in the data from the start rather than after the fact: each hh
    # row twice (1,122) among 4,488 labeled rows, a fifth of the 5,610-row mix. ~4 min on one H100;
    # ~5 h on the 2-core CPU (~25 s a step unpadded; ~48 s padded), over sessions (`--snapshot` before each ends, commit checkpoints/).
    # 2026-11-27: passed every check on one H200 (selection 0.857, flip 0.080; hh selection 0.636 against
    # the default's 0.493 and length's 0.500) and ships as `default` (scripts/train_default.py trains on its mix).
    "hh_from_stage1": Trial(labeled_per_hh=4.0, lr=1.0e-3, start=STAGE1, steps=720, warmup_ratio=0.03, hh_copies=2),
    # Set 2026-11-27, before it ran, after scripts/length_split.py showed the default at chance in domain
    # where the shorter response is the better one (0.553 on the selection rows, n=85) and a length
    # detector on hh-harmless (its verdict is the longer response on 93% of the hh selection split):
    # hh_from_stage1 with a third of the labeled rows ones whose better response is the shorter (15%
    # of train_labeled), so that length stops being the cheapest cue. ~5 h on the 2-core CPU, or one GPU call.
    # 2026-11-27, H200, beside hh_from_stage1: rejected (selection 0.823 < 0.83, flip 0.210 > 0.12; hh
    # selection 0.629); in domain shorter-wins pairs rose (0.565 -> 0.624), longer-wins ones fell (0.976 -> 0.905).
    "balanced_from_stage1": Trial(labeled_per_hh=4.0, lr=1.0e-3, start=STAGE1, steps=720, warmup_ratio=0.03,
                                  hh_copies=2, shorter_wins_share=1 / 3),
}


def run_dir(name: str) -> Path:
    return ROOT / "runs" / name


def carried(name: str) -> CarriedRun:
    return CarriedRun(run_dir(name), ROOT / "checkpoints" / name)


def mix_path(name: str) -> Path:
    return SPLITS / f"{name}_mix.jsonl.gz"


def train_overrides(name: str, local: bool = False) -> list[str]:
    t = TRIALS[name]
    # On a GPU a step takes ~0.3 s: a checkpoint every 10 steps would cost more than the steps.
    checkpoint_every = 100 if local and cuda() else 10
    return [
        f"model={t.start}", f"data=[{mix_path(name)}]", f"output_dir={run_dir(name)}", "num_workers=1",
        f"max_steps={t.steps}", "batch_size=8", "grad_accum=1", f"lr={t.lr}", f"warmup_ratio={t.warmup_ratio}",
        "scheduler=cosine", "label_smoothing=0.1", "max_prompt_tokens=256", "max_response_tokens=256",
        f"checkpoint_every={checkpoint_every}", "keep_checkpoints=2", "log_every=5",
        *local_training(local), *(curve(local) if t.start == STAGE1 else []),
    ]


def curve(local: bool) -> list[str]:
    """A whole run from stage 1 (a candidate for the default) records the default's held-out curve:
    the same 120 in-domain held-out rows (within the reported rows 0-499; they choose nothing), every
    100 steps (~7 min of a 2-core CPU each), every 250 on a GPU."""
    every = 250 if local and cuda() else 100
    return [f"eval_data={SPLITS / 'labeled_heldout.jsonl.gz'}", f"eval_every={every}", "eval_limit=120"]


# The bar, set before the run: ship only if the in-domain judge stays within the bars and
# hh-harmless moves clearly (raw probabilities, the budgets both were trained at).
BAR = {
    "selection_accuracy_min": 0.83,  # the default: 0.850 on these rows
    "selection_flip_max": 0.12,  # the default: 0.083; the bar is 0.12
    "hh_select_over_length_baseline_min": 0.05,
    "hh_select_over_default_min": 0.03,
}
# (name, data, offset, limit) of the rows each model is judged on
ROWS = {
    "selection": (SPLITS / "labeled_heldout.jsonl.gz", 500, 300),
    "hh_select": (HH_SELECT, 0, None),
}


def make_hh_select() -> None:
    """hh-harmless's train split, by prompt, into adaptation rows and the selection split (20%)."""
    make_splits()  # hh_train / labeled_train and their held-out splits, as the ablation makes them
    if not HH_SELECT.exists():
        split_by_prompt(SPLITS / "hh_train.jsonl.gz", HH_TRAIN, HH_SELECT, 0.2, salt="hh-adapt-select")


def shorter_wins(row: dict) -> bool:
    """A labeled row whose better response is the shorter one (in characters; equal lengths: False)."""
    a, b = len(row["response_a"]), len(row["response_b"])
    return a != b and (a < b) == (row["label"] == "A")


def make_data(name: str) -> None:
    make_hh_select()
    mix_file = mix_path(name)
    if mix_file.exists():
        return
    t = TRIALS[name]
    hh = [row for _, row in iter_jsonl(HH_TRAIN)] * t.hh_copies
    # Labeled rows from the end of the train split (the default's 5,760 pairs came from a shuffle of all of it).
    labeled = [row for _, row in iter_jsonl(SPLITS / "labeled_train.jsonl.gz")]
    count = int(len(hh) * t.labeled_per_hh)
    if t.shorter_wins_share is None:
        labeled = labeled[-count:]
    else:
        quota = round(count * t.shorter_wins_share)
        shorter = [row for row in reversed(labeled) if shorter_wins(row)][:quota]
        if len(shorter) < quota:
            raise SystemExit(f"{name}: {quota} labeled rows whose shorter response wins wanted, the split has {len(shorter)}")
        longer = [row for row in reversed(labeled) if not shorter_wins(row)][:count - len(shorter)]
        labeled = shorter + longer
    mix = hh + labeled
    random.Random(0).shuffle(mix)
    with atomic_writer(mix_file) as f:
        for row in mix:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{mix_file}: {len(hh)} hh-harmless + {len(labeled)} labeled rows")


def train(name: str, local: bool = False) -> None:
    """Train (or continue: the newest checkpoint here, else the committed one) up to runs/<trial>/final."""
    resume = carried(name).start()
    cmd = [*GRAM_CLI, "train", str(ROOT / "train_configs" / "finetune.yaml")]
    for item in [*train_overrides(name, local), *([f"resume_from={resume}"] if resume else [])]:
        cmd += ["--set", item]
    run(cmd)


def evaluate(trial_dir: Path, name: str, model: str, rows: str, local: bool = False) -> dict:
    data, offset, limit = ROWS[rows]
    out = trial_dir / "eval" / name / rows
    if not (out / "metrics.json").is_file():
        run([*GRAM_CLI, "eval", str(data), "--model", model, "--out", str(out), "--offset", str(offset),
             *(["--limit", str(limit)] if limit else []), "--no-calibrated", "--max-prompt-tokens", "256",
             "--max-response-tokens", "256", *(local_eval_flags() if local else [])])
    return json.loads((out / "metrics.json").read_text())


def bar_checks(selection: dict, hh_accuracy: float, hh_length: float, hh_default: float) -> dict[str, bool]:
    """BAR applied to a judge's selection-row metrics and its hh selection accuracy (beside the
    length baseline's and the judge it would replace on the same hh rows)."""
    return {
        "selection_accuracy_min": selection["accuracy"] >= BAR["selection_accuracy_min"],
        "selection_flip_max": selection["flip_rate"] <= BAR["selection_flip_max"],
        "hh_select_over_length_baseline_min": hh_accuracy - hh_length >= BAR["hh_select_over_length_baseline_min"],
        "hh_select_over_default_min": hh_accuracy - hh_default >= BAR["hh_select_over_default_min"],
    }


def decide(name: str, local: bool = False) -> dict:
    trial_dir = run_dir(name)
    adapted = str(trial_dir / "final")
    sel_metrics = evaluate(trial_dir, "adapted", adapted, "selection", local)
    sel = sel_metrics["pairs"]
    hh_metrics = evaluate(trial_dir, "adapted", adapted, "hh_select", local)
    hh, length = hh_metrics["pairs"], hh_metrics["length_baseline"]["pairs"]["accuracy"]
    hh_default = evaluate(run_dir("hh_adapt"), "default", DEFAULT, "hh_select", local)["pairs"]
    checks = bar_checks(sel, hh["accuracy"], length, hh_default["accuracy"])
    decision = {
        "bar": BAR, "checks": checks, "ship": all(checks.values()),
        "selection": {k: sel[k] for k in ("n", "accuracy", "accuracy_ci95", "flip_rate", "ece")},
        "hh_select": {"n": hh["n"], "adapted": hh["accuracy"], "adapted_flip": hh["flip_rate"],
                      "default": hh_default["accuracy"], "default_flip": hh_default["flip_rate"], "length_baseline": length},
        # Not in the bar (set after the first three trials): accuracy where the shorter response is better.
        "length_split": {"selection": sel_metrics.get("length_split"), "hh_select": hh_metrics.get("length_split")},
        "trial": name, "train": train_overrides(name, local),
    }
    with atomic_writer(trial_dir / "decision.json") as f:
        f.write(json.dumps(decision, indent=2) + "\n")
    print(json.dumps(decision, indent=2))
    return decision


def record(name: str) -> Path:
    """What a decided trial leaves to commit: docs/trials/<trial>/ with decision.json, each evaluation's
    metrics and per-pair predictions (<model>_<rows>.json, .predictions.jsonl) and train_metrics.json.
    The adapter is not among them (a trial that ships becomes the default, with its checkpoint)."""
    trial_dir, out = run_dir(name), ROOT / "docs" / "trials" / name
    if not (trial_dir / "decision.json").is_file():
        raise SystemExit(f"{trial_dir}: no decision.json (train and decide first)")
    out.mkdir(parents=True, exist_ok=True)
    copies = {trial_dir / "decision.json": out / "decision.json", trial_dir / "metrics.json": out / "train_metrics.json"}
    for metrics in sorted((trial_dir / "eval").glob("*/*/metrics.json")):
        model, rows = metrics.parent.parent.name, metrics.parent.name
        copies[metrics] = out / f"{model}_{rows}.json"
        copies[metrics.parent / "predictions.jsonl"] = out / f"{model}_{rows}.predictions.jsonl"
    for source, target in copies.items():
        if source.is_file():
            with atomic_writer(target) as f:
                f.write(source.read_text())
    print(f"{out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trial", choices=sorted(TRIALS), default="hh_adapt", help="which trial (see TRIALS)")
    ap.add_argument("--no-train", action="store_true", help="evaluate and decide from runs/<trial>/final")
    ap.add_argument("--snapshot", action="store_true",
                    help="only copy the newest checkpoint into checkpoints/<trial> (commit it before a session ends)")
    ap.add_argument("--record", action="store_true",
                    help="only copy the decided trial's decision, evaluations and training metrics into docs/trials/<trial>")
    ap.add_argument("--local", action="store_true",
                    help="no Ray: train with launcher=local (CUDA when present) and score in this process "
                         "(fp32 on CUDA, as the CPU service scores; on a CPU the scorer's dtype: auto)")
    args = ap.parse_args()
    make_data(args.trial)
    if args.snapshot:
        carried(args.trial).snapshot()
        return
    if args.record:
        record(args.trial)
        return
    if not args.no_train and not (run_dir(args.trial) / "final").exists():
        train(args.trial, args.local)
    decide(args.trial, args.local)


if __name__ == "__main__":
    main()
