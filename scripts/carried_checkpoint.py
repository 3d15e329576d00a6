"""A long training run carried across sessions and machines by a committed copy of its newest checkpoint.

    python scripts/train_default.py --snapshot                           # the shipped default's run
    python scripts/hh_adaptation_trial.py --trial hh_from_stage1 --snapshot  # a trial's run

A session may end on one machine and the next start on a fresh clone that holds only what was
committed. `runs/` is ignored, so a run's checkpoints there die with the machine; `snapshot()` copies
the newest one (adapter, optimizer, schedule and data position: a few MB) into `checkpoints/<name>/`,
which is committed, and `resume_point()` picks whichever of the two is further along.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path


def step_of(directory: Path | None) -> int:
    return -1 if directory is None else json.loads((directory / "position.json").read_text())["step"]


@dataclass(frozen=True)
class CarriedRun:
    run: Path  # the run's output_dir (runs/<name>, not committed)
    committed: Path  # checkpoints/<name> (committed)
    # Files of the run's own (beside its checkpoints, e.g. the training seconds so far) that travel with
    # the committed copy: snapshotted with it, and put back in the run when it continues from that copy.
    files: tuple[str, ...] = ()

    def newest(self) -> Path | None:
        """The newest complete checkpoint this machine's run wrote."""
        from gram_ray.train.loop import newest_checkpoint

        return newest_checkpoint(self.run)

    def kept(self) -> Path | None:
        """The committed checkpoint, if there is one."""
        from gram_ray.train.loop import STATE_FILE

        return self.committed if (self.committed / STATE_FILE).is_file() else None

    def resume_point(self) -> Path | None:
        """The checkpoint the run continues from: the newest local one, else the committed one."""
        local, kept = self.newest(), self.kept()
        return local if local is not None and step_of(local) >= step_of(kept) else kept

    def start(self) -> Path | None:
        """The checkpoint to continue from (`resume_point`). When that is the committed copy (a fresh
        machine), its `files` are first put back in the run, and the held-out curve it carries is
        copied into the run up to its step, so that the run appends to it and the next snapshot keeps
        the earlier points."""
        resume = self.resume_point()
        if resume is None or resume != self.kept():
            return resume
        for name in self.files:
            if (resume / name).is_file():
                self.run.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(resume / name, self.run / name)
        carried_curve, curve = self.committed / "curve.jsonl", self.run / "curve.jsonl"
        if carried_curve.is_file() and not curve.is_file():
            step = step_of(resume)
            points = [line for line in carried_curve.read_text().splitlines()
                      if line.strip() and json.loads(line)["step"] <= step]
            self.run.mkdir(parents=True, exist_ok=True)
            curve.write_text("".join(f"{line}\n" for line in points))
        return resume

    def snapshot(self) -> Path | None:
        """Copy the newest local checkpoint (and the run's curve.jsonl and `files`, if any) over the committed one,
        atomically (a copy under a temporary name, then a rename); nothing when that is not newer."""
        source, kept = self.newest(), self.kept()
        if source is None and kept is None:
            raise SystemExit(f"no checkpoint under {self.run}")
        if source is None or step_of(source) <= step_of(kept):  # e.g. a fresh clone's run that had nothing left to train
            print(f"{self.committed} is already the newest checkpoint (step {step_of(kept)})")
            return None
        self.committed.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.committed.name}-", dir=self.committed.parent))
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        for name in ("curve.jsonl", *self.files):
            if (self.run / name).is_file():
                shutil.copy(self.run / name, tmp / name)
        if self.committed.exists():
            shutil.rmtree(self.committed)
        tmp.rename(self.committed)
        print(f"{self.committed} ← {source} (step {step_of(self.committed)})")
        return self.committed
