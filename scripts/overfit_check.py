"""Can the stage-2 recipe learn at all? Over-fit 4 labeled pairs with the real backbone.

    python scripts/overfit_check.py                  # ~10 min on 2 CPU cores
    python scripts/overfit_check.py --set lr=3e-4    # the same with another setting

It trains `gram-ray train train_configs/finetune.yaml` (the shipped stage-1 adapter, the default
recipe's LoRA layout and budgets) on the first 4 pairs of the labeled training split, each in both
orders, every step on the same 4 pairs. A recipe that works drives the verdict loss down to the
label-smoothing floor H(1 - ε/2, ε/2) (0.1985 at ε = 0.1); one that stalls above it cannot learn
the task however long it runs. tests/test_train.py runs the same check on a tiny model.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.ablation import GRAM_CLI, SPLITS, STAGE1, make_splits  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--set", dest="extra", action="append", default=[], help="training overrides")
    args = parser.parse_args()
    make_splits()
    out = ROOT / "runs" / "overfit"
    sets = [f"model={STAGE1}", f"data=[{SPLITS / 'labeled_train.jsonl.gz'}]", "limit=4", f"output_dir={out}",
            "num_workers=1", f"max_steps={args.steps}", "batch_size=4", "grad_accum=1", "lr=1.0e-3", "warmup_ratio=0",
            "scheduler=constant_with_warmup", "max_prompt_tokens=256", "max_response_tokens=256", "log_every=5",
            f"checkpoint_every={args.steps}", *args.extra]
    cmd = [*GRAM_CLI, "train", "train_configs/finetune.yaml"]
    for item in sets:
        cmd += ["--set", item]
    subprocess.run(cmd, check=True, cwd=ROOT)
    metrics = json.loads((out / "metrics.json").read_text())
    floor = -(0.95 * math.log(0.95) + 0.05 * math.log(0.05))
    print(f"RESULT first_loss={metrics['first_loss']:.4f} final_loss={metrics['final_loss']:.4f} floor={floor:.4f} "
          f"reached={int(metrics['final_loss'] < floor + 0.05)}")


if __name__ == "__main__":
    main()
