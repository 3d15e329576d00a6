"""Run a training job: ``gram-ray train train_configs/finetune.yaml [--set key=value …]``.

Also as a Ray job on a cluster: ``ray job submit --working-dir . -- gram-ray train train_configs/finetune.yaml``
(``gram-ray train`` joins the cluster in ``RAY_ADDRESS`` or the job's own, else starts a local one).

Without Ray (a lone GPU machine whose image has torch, transformers and peft but not Ray):
``gram-ray train CONFIG --set launcher=local [--set use_gpu=true]`` runs the same loop in this process,
with the same checkpoints, curve, metrics and final model.

Before any worker starts, every data file is validated line by line: a malformed row stops the job
with ``FILE:LINE: FIELD: problem``, or with ``skip_bad_rows`` is dropped and counted (the cleaned
rows are written to ``<output_dir>/data/`` and that is what Ray Data reads).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gram_ray.data import PairRow, atomic_writer, iter_jsonl, read_pairs
from gram_ray.train.config import TrainConfig
from gram_ray.train.stages import missing_field, stage

logger = logging.getLogger(__name__)


class TrainResult(BaseModel):
    output_dir: str
    final_model: str
    metrics: dict[str, Any]
    skipped_rows: int
    checkpoint: str | None


def validated_files(cfg: TrainConfig) -> Iterator[tuple[str, list[PairRow], int]]:
    """Each data file with its usable rows and how many were skipped; a malformed row or one that lacks
    a field the stage needs stops with its file and line (with ``skip_bad_rows``, malformed ones are
    dropped and counted)."""
    for path in cfg.data:
        if not Path(path).is_file():
            raise FileNotFoundError(f"data: {path} does not exist")
        rows, skipped = read_pairs(path, skip_bad_rows=cfg.skip_bad_rows, limit=cfg.limit)
        for error in skipped:
            logger.warning("skipping %s", error)
        if not rows:
            raise ValueError(f"data: {path} has no usable rows")
        for row in rows:
            missing = missing_field(cfg.stage, row)
            if missing is not None:
                raise ValueError(f"{path}:{row.line}: {missing}: missing (stage {cfg.stage} needs "
                                 f"{' and '.join(stage(cfg.stage).required)} on every row)")
        yield str(path), rows, len(skipped)


def prepare_data(cfg: TrainConfig) -> tuple[list[str], int]:
    """Validate every file; return the files Ray Data should read and how many rows were skipped."""
    files: list[str] = []
    skipped_total = 0
    for path, rows, skipped in validated_files(cfg):
        skipped_total += skipped
        if skipped or cfg.limit is not None:
            # Ray Data reads exactly the rows that passed validation.
            keep = {r.line for r in rows}
            clean = Path(cfg.output_dir) / "data" / (Path(path).name.removesuffix(".gz").removesuffix(".jsonl") + ".jsonl")
            with atomic_writer(clean) as f:
                for line, obj in iter_jsonl_lenient(path):
                    if line in keep:
                        f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            files.append(str(clean))
        else:
            files.append(path)
    return files, skipped_total


def iter_jsonl_lenient(path: str):
    """Like iter_jsonl but yields nothing for lines it cannot parse (they were already reported)."""
    try:
        yield from iter_jsonl(path)
    except ValueError:
        return


def worker_resources(cfg: TrainConfig) -> dict[str, float]:
    """Default resources per worker: one GPU each with ``use_gpu``; on CPUs the cluster's CPUs split
    evenly over the workers (at least one each), so that the job uses the whole machine."""
    import ray

    if cfg.use_gpu:
        return {"CPU": 1, "GPU": 1}
    total = int(ray.cluster_resources().get("CPU", 1))
    return {"CPU": float(max(1, total // cfg.num_workers))}


def train(cfg: TrainConfig) -> TrainResult:
    if cfg.launcher == "local":
        return train_local(cfg)
    import ray
    import ray.data
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from gram_ray.train.loop import train_loop_per_worker

    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.output_dir) / ".fail_injected").unlink(missing_ok=True)
    files, skipped = prepare_data(cfg)
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=True)

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    # Read once, before the trainer holds the CPUs (a worker may take them all, which would starve
    # streaming read tasks); every worker then iterates the same blocks from the object store.
    dataset = ray.data.read_json(files, include_paths=True).materialize()
    storage = Path(cfg.output_dir).resolve() / "ray"
    resources = cfg.resources_per_worker or worker_resources(cfg)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "train": cfg.model_dump(), "run_id": uuid.uuid4().hex, "storage": str(storage / "run"),
            "cpus_per_worker": resources.get("CPU"),
        },
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name="run",
            storage_path=str(storage),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
        ),
        datasets={"train": dataset},
        # Every worker sees all rows and takes its own deterministic stride (see loop.epoch_batches),
        # which makes the data position exact on resume.
        dataset_config=DataConfig(datasets_to_split=[]),
    )
    result = trainer.fit()
    return _result(cfg, skipped, result.checkpoint.path if result.checkpoint else None)


def _result(cfg: TrainConfig, skipped: int, checkpoint: str | None) -> TrainResult:
    metrics_path = Path(cfg.output_dir) / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["skipped_rows"] = skipped
    with atomic_writer(metrics_path) as f:
        json.dump(metrics, f, indent=2)
    return TrainResult(output_dir=cfg.output_dir, final_model=metrics["final_model"], metrics=metrics,
                       skipped_rows=skipped, checkpoint=checkpoint)


def train_local(cfg: TrainConfig) -> TrainResult:
    """The training loop in this process, without Ray: one worker on CUDA (``use_gpu``) or on every
    CPU core. Checkpoints go where a Ray run puts them (``<output_dir>/ray/run/checkpoint_*``), so
    either launcher resumes the other's (``resume_from``); a process that dies is not restarted:
    run it again with ``resume_from=latest``."""
    import torch

    from gram_ray.train.loop import WorkerEnv, run_worker

    if cfg.num_workers != 1:
        raise ValueError(f"num_workers: {cfg.num_workers} with launcher=local, which runs one process; "
                         "set num_workers=1 or launcher=ray")
    if cfg.use_gpu and not torch.cuda.is_available():
        raise ValueError("use_gpu: true but torch sees no CUDA device")
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.output_dir) / ".fail_injected").unlink(missing_ok=True)
    rows, skipped = [], 0
    # The rows the validation read, in the order a Ray run's workers sort theirs (file, then id), so the
    # data position means the same rows under either launcher.
    for _, found, dropped in sorted(validated_files(cfg), key=lambda checked: str(Path(checked[0]).resolve())):
        rows += sorted(found, key=lambda r: (str(r.id) if r.id is not None else f"{r.line:012d}"))
        skipped += dropped
    storage = Path(cfg.output_dir).resolve() / "ray" / "run"
    saved: list[Path] = []

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        if checkpoint_dir is None:
            return
        target = storage / f"checkpoint_local_{metrics['step']:07d}"
        tmp = storage / f".{target.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(checkpoint_dir, tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)  # a checkpoint directory appears whole or not at all
        saved.append(target)
        while len(saved) > cfg.keep_checkpoints:
            shutil.rmtree(saved.pop(0), ignore_errors=True)

    storage.mkdir(parents=True, exist_ok=True)
    run_worker(cfg, WorkerEnv(
        rank=0, world=1, device=torch.device("cuda" if cfg.use_gpu else "cpu"), rows=rows, run_id=uuid.uuid4().hex,
        storage=storage, restored=None, prepare=lambda module: module, report=report,
    ))
    return _result(cfg, skipped, str(saved[-1]) if saved else None)

