"""The per-worker training loop, run by Ray Train's ``TorchTrainer`` (:func:`train_loop_per_worker`) or,
without Ray, in one process (``launcher: local``); both hand :func:`run_worker` a :class:`WorkerEnv`.

Data: every worker reads the (already validated) rows through Ray Data, orders them
deterministically, and takes its rank's stride of a per-epoch seeded permutation. The data position
is therefore just (epoch, micro-batch index), which a checkpoint stores and a resumed run skips to
exactly. Checkpoints (every ``checkpoint_every`` steps) hold the trainable weights (the adapter for
LoRA), optimizer, scheduler and data position; ``ray.train.report`` persists them and keeps the last
``keep_checkpoints``. When a worker dies, Ray Train restarts the group from the latest one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gram_ray import judge
from gram_ray.data import atomic_writer, parse_pair_row, read_pairs
from gram_ray.head import unwrap
from gram_ray.judge import VerdictTokens
from gram_ray.models import (
    TRAINING_RECORD,
    cpu_flags,
    load_causal_lm,
    load_tokenizer,
    resolve_attn_implementation,
    resolve_dtype,
    resolve_model,
)
from gram_ray.train.config import TrainConfig
from gram_ray.train.examples import verdict_batch
from gram_ray.train.modules import VerdictLoss, to_device
from gram_ray.train.stages import stage

STATE_FILE = "trainer_state.pt"
POSITION_FILE = "position.json"
MODEL_DIR = "model"


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------


def build_model(cfg: TrainConfig, device: torch.device) -> tuple[Any, Any, Any]:
    """(model, tokenizer, source): the model with only the parameters to train requiring grad."""
    source = resolve_model(cfg.model)
    tokenizer = load_tokenizer(source)
    attn = resolve_attn_implementation("auto", device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    if cfg.stage == "bt":
        # A fresh scalar head on the backbone (an adapter's base: the baseline starts from the backbone).
        base = source.base if source.kind == "peft" else source
        model = load_causal_lm(base, dtype=torch.float32, attn_implementation=attn, is_trainable=True, scalar_head=True)
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        model = load_causal_lm(source, dtype=torch.float32, attn_implementation=attn, is_trainable=True)

    if source.kind == "peft" and cfg.stage != "bt":
        check_adapter_matches(cfg, source.path)  # continue training the adapter it carries (stage 1 → stage 2)
    elif cfg.lora is not None:
        from peft import LoraConfig, get_peft_model

        n_layers = model.config.num_hidden_layers
        layers = list(range(n_layers - cfg.lora.last_layers, n_layers)) if cfg.lora.last_layers else None
        model = get_peft_model(
            model,
            LoraConfig(
                r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                target_modules=cfg.lora.target_modules, layers_to_transform=layers,
                task_type=stage(cfg.stage).peft_task_type,
            ),
        )
    if cfg.gradient_checkpointing:
        # Recomputes activations in the backward pass: less memory, ~30% more compute. transformers 5.x
        # renamed it activation checkpointing; the old name warns and goes in v6.
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(device)
    return model, tokenizer, source


def check_adapter_matches(cfg: TrainConfig, adapter_dir: str) -> None:
    """Training continues the adapter a PEFT model carries; a config that asks for another layout
    (full fine-tuning, another rank or set of layers) is an error rather than silently ignored."""
    found = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    if cfg.lora is None:
        raise ValueError(f"lora: null (full fine-tuning) but model {adapter_dir} is a LoRA adapter; "
                         "export a merged model first or keep its lora settings")
    n_layers = found.get("layers_to_transform")
    wanted = {
        "r": (cfg.lora.r, found.get("r")),
        "alpha": (cfg.lora.alpha, found.get("lora_alpha")),
        "target_modules": (sorted(cfg.lora.target_modules), sorted(found.get("target_modules") or [])),
        "last_layers": (cfg.lora.last_layers, len(n_layers) if n_layers else None),
    }
    for name, (asked, have) in wanted.items():
        if asked != have:
            raise ValueError(f"lora.{name}: {asked!r} asked, but model {adapter_dir} is an adapter with {name} {have!r}; "
                             f"training continues that adapter, so set lora.{name}={have!r}")


def lr_factor(step: int, warmup: int, total: int, kind: str) -> float:
    """The learning-rate multiplier for the update after ``step`` updates.

    Warm-up rises linearly to 1 over ``warmup`` steps starting above 0 (the first update already
    moves; Hugging Face's schedules give it lr 0); then cosine or linear decay to 0 at ``total``, or
    constant.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "constant_with_warmup":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Arrow/numpy scalars and arrays from Ray Data as plain Python values."""
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return value.tolist()
    return value


def _order_key(record: dict[str, Any]) -> tuple[str, str]:
    row_id = record.get("id", record.get("pair_id"))
    return (str(record.get("path", "")), str(row_id) if row_id is not None else json.dumps(record, sort_keys=True, default=str))


def load_rows(dataset_shard: Any) -> list[Any]:
    """All rows of the Ray Data iterator, parsed, in a deterministic order (the rows were validated
    with their line numbers on the driver, so parsing cannot fail here).

    Arrow gives every row of a block every column, null where the row lacks it (a file mixing
    chosen/rejected rows with response_a/response_b rows): nulls are dropped so that each row reads
    as it was written.
    """
    records = sorted(
        ({k: _plain(v) for k, v in r.items() if v is not None} for r in dataset_shard.iter_rows()), key=_order_key
    )
    return [parse_pair_row(r, r.get("path", "data"), 0) for r in records]


def epoch_batches(n_rows: int, epoch: int, rank: int, world: int, batch_size: int, seed: int) -> list[list[int]]:
    """This rank's micro-batches (row indices) for one epoch; every rank gets the same number."""
    order = list(range(n_rows))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    per_rank = n_rows // world
    if per_rank == 0:
        raise ValueError(f"data: {n_rows} rows cannot feed {world} workers")
    mine = order[: per_rank * world][rank::world]
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]


def total_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    if cfg.max_steps > 0:
        return cfg.max_steps
    return cfg.epochs * math.ceil(batches_per_epoch / cfg.grad_accum)


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.named_parameters() if v.requires_grad}


def save_checkpoint(directory: Path, model: Any, optimizer: Any, scheduler: Any, position: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    (directory / MODEL_DIR).mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(model), str(directory / MODEL_DIR / "trainable.safetensors"))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "position": position},
        directory / STATE_FILE,
    )
    (directory / POSITION_FILE).write_text(json.dumps(position))


def latest_checkpoint_dir(storage: Path, run_id: str | None = None) -> Path | None:
    """The newest complete checkpoint in ``storage`` (``<output_dir>/ray/run``): this run's own when
    ``run_id`` is given, else any run's (``resume_from: latest``).

    Ray Train registers a reported checkpoint when its controller next polls the workers; a worker
    that dies right after reporting can beat that poll, and the restarted group is then handed no
    checkpoint. The files are in storage all the same, so the loop falls back to them.
    """
    best, best_key = None, (-1, 0.0)
    for position_file in storage.glob(f"checkpoint_*/{POSITION_FILE}"):
        try:
            position = json.loads(position_file.read_text())
        except (OSError, ValueError):
            continue
        key = (position.get("step", -1), position_file.stat().st_mtime)
        complete = (position_file.parent / STATE_FILE).is_file()
        if complete and (run_id is None or position.get("run_id") == run_id) and key > best_key:
            best, best_key = position_file.parent, key
    return best


def newest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint under ``output_dir`` written by any run."""
    return latest_checkpoint_dir(Path(output_dir) / "ray" / "run")


def resume_directory(cfg: TrainConfig) -> Path | None:
    if cfg.resume_from is None:
        return None
    if cfg.resume_from == "latest":
        return newest_checkpoint(Path(cfg.output_dir))
    directory = Path(cfg.resume_from)
    if not (directory / STATE_FILE).is_file():
        raise FileNotFoundError(f"resume_from: {directory} holds no {STATE_FILE} (not a gram-ray checkpoint)")
    return directory


def load_checkpoint(directory: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    from safetensors.torch import load_file

    weights = load_file(str(directory / MODEL_DIR / "trainable.safetensors"))
    missing = [k for k, v in model.named_parameters() if v.requires_grad and k not in weights]
    if missing:
        raise RuntimeError(f"checkpoint {directory} lacks trainable weights {missing[:3]}…")
    model.load_state_dict(weights, strict=False)
    # A checkpoint written on a GPU resumes on a CPU (and back): the optimizer moves its state to the parameters' device.
    state = torch.load(directory / STATE_FILE, weights_only=False, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["position"]


def check_resumable(position: dict[str, Any], layout: dict[str, Any], directory: Path) -> None:
    """A resumed run must cut the data the same way, or its data position means other rows."""
    for key, value in layout.items():
        if key in position and position[key] != value:
            raise ValueError(f"resume_from: checkpoint {directory} was written with {key}={position[key]!r}, "
                             f"this run has {key}={value!r}; resume with the same value")


def save_final(cfg: TrainConfig, model: Any, tokenizer: Any, source: Any, metrics: dict[str, Any]) -> Path:
    """``<output_dir>/final``: a Hugging Face model directory, or a PEFT adapter directory whose
    ``base_model_name_or_path`` is the base model's path (so plain transformers + peft load it)."""
    final = Path(cfg.output_dir) / "final"
    tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=cfg.output_dir))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    adapter_config = tmp / "adapter_config.json"
    if adapter_config.is_file():
        base = source.base if source.kind == "peft" else source
        data = json.loads(adapter_config.read_text())
        data["base_model_name_or_path"] = base.path
        adapter_config.write_text(json.dumps(data, indent=2))
    (tmp / TRAINING_RECORD).write_text(json.dumps({"stage": cfg.stage, "config": cfg.model_dump(), "metrics": metrics}, indent=2))
    if final.exists():
        import shutil

        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def export_checkpoint(cfg: TrainConfig, checkpoint_dir: Path, output_dir: Path) -> Path:
    """Turn a training checkpoint into a model directory, as the end of a run would (for a run that
    was stopped early). The model is rebuilt from ``cfg`` and the checkpoint's weights loaded into it."""
    model, tokenizer, source = build_model(cfg, torch.device("cpu"))
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(Path(checkpoint_dir) / MODEL_DIR / "trainable.safetensors")), strict=False)
    position = json.loads((Path(checkpoint_dir) / POSITION_FILE).read_text())
    export_cfg = cfg.model_copy(update={"output_dir": str(output_dir)})
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return save_final(export_cfg, model, tokenizer, source, {"exported_from": str(checkpoint_dir), "step": position["step"]})


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


@dataclass
class WorkerEnv:
    """What a launcher hands the loop: Ray Train's worker context (:func:`train_loop_per_worker`), or
    one plain process (:func:`gram_ray.train.run.train_local`, for machines without Ray)."""

    rank: int
    world: int
    device: torch.device
    rows: list[Any]
    run_id: str
    storage: Path  # this run's checkpoints (<output_dir>/ray/run)
    restored: Any  # a context manager yielding the directory of a checkpoint the launcher restored, or None
    prepare: Callable[[torch.nn.Module], torch.nn.Module]  # wrap the module for the parallel strategy
    report: Callable[[dict[str, Any], Path | None], None]  # metrics, and (rank 0) a checkpoint directory to persist
    cpus: float | None = None  # CPUs this worker holds (its torch threads on a CPU)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        ray.train.report(metrics, checkpoint=None if checkpoint_dir is None else Checkpoint.from_directory(str(checkpoint_dir)))

    cfg = TrainConfig(**loop_config["train"])
    context = ray.train.get_context()
    checkpoint = ray.train.get_checkpoint()
    run_worker(cfg, WorkerEnv(
        rank=context.get_world_rank(), world=context.get_world_size(), device=ray.train.torch.get_device(),
        rows=load_rows(ray.train.get_dataset_shard("train")), run_id=loop_config["run_id"],
        storage=Path(loop_config["storage"]), restored=checkpoint.as_directory() if checkpoint is not None else None,
        prepare=lambda module: ray.train.torch.prepare_model(
            module, parallel_strategy=cfg.strategy,
            # FSDP flattens parameters per unit; LoRA mixes frozen and trainable ones, which needs use_orig_params.
            parallel_strategy_kwargs={"use_orig_params": True} if cfg.strategy == "fsdp" else None,
        ),
        report=report, cpus=loop_config.get("cpus_per_worker"),
    ))


def run_worker(cfg: TrainConfig, env: WorkerEnv) -> None:
    """The training loop of one worker: resume, train, log, checkpoint, evaluate, save the final model."""
    rank, world, device = env.rank, env.world, env.device
    torch.manual_seed(cfg.seed + rank)
    if device.type == "cpu" and env.cpus:
        # Ray caps a worker's threads at its CPUs; use exactly them (all cores when one worker holds the node).
        torch.set_num_threads(max(1, int(env.cpus)))

    rows = env.rows
    model, tokenizer, source = build_model(cfg, device)
    verdict_ids = VerdictTokens.from_tokenizer(tokenizer).ids
    batches_per_epoch = len(epoch_batches(len(rows), 0, rank, world, cfg.batch_size, cfg.seed))
    steps = total_steps(cfg, batches_per_epoch)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = int(cfg.warmup_ratio * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, steps, cfg.scheduler))

    run_id = env.run_id
    layout = {"rows": len(rows), "world": world, "batch_size": cfg.batch_size, "seed": cfg.seed}
    position: dict[str, Any] = {"step": 0, "epoch": 0, "micro": 0, "tokens": 0, "resumed_from": [], "run_id": run_id, **layout}
    fallback = None
    if env.restored is None:  # this run's own checkpoint files (a worker restart), else an earlier run's (resume_from)
        fallback = latest_checkpoint_dir(env.storage, run_id) or resume_directory(cfg)
    if env.restored is not None or fallback is not None:
        with env.restored if env.restored is not None else contextlib.nullcontext(fallback) as directory:
            position = load_checkpoint(Path(directory), model, optimizer, scheduler)
            check_resumable(position, layout, Path(directory))
        position.update(layout, run_id=run_id, resumed_from=[*position.get("resumed_from", []), position["step"]])
        if rank == 0:
            print(f"[gram-ray] resumed from the checkpoint at step {position['step']} "
                  f"(epoch {position['epoch']}, micro-batch {position['micro']}): {directory}", flush=True)

    prefix_ids = judge.verdict_prefix_ids(tokenizer) if shares_prefix(cfg, model) else None
    spec = stage(cfg.stage)
    module = spec.objective(model, verdict_ids, cfg, prefix_ids)
    wrapped = env.prepare(module)
    dtype = resolve_dtype(cfg.dtype, device)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    model.train()

    n_trainable = sum(p.numel() for p in params)
    machine = {"compute_dtype": str(dtype).removeprefix("torch."), "device": str(device), "cpu_flags": cpu_flags(),
               "torch_threads": torch.get_num_threads(), "shared_prefix_tokens": len(prefix_ids or [])}
    if rank == 0:
        print(f"[gram-ray] {cfg.stage}: {len(rows)} rows, {world} workers, {steps} steps, "
              f"{n_trainable:,} trainable parameters, compute {machine['compute_dtype']}, "
              f"{machine['torch_threads']} threads, shared prefix {machine['shared_prefix_tokens']} tokens", flush=True)
    evaluating = bool(cfg.eval_data) and cfg.stage == "finetune"  # the same on every rank: no rank skips a collective
    curve = HeldOutCurve(cfg, tokenizer, device, autocast, world) if rank == 0 and evaluating else None

    start_time, start_step = time.perf_counter(), position["step"]
    window_loss, window_n, window_tokens, truncated = 0.0, 0, 0, 0
    train_seconds, train_tokens = 0.0, 0  # this process's optimizer steps only (no checkpoints, no evaluation)
    first_loss = last_loss = None
    fail_marker = Path(cfg.output_dir) / ".fail_injected"
    while position["step"] < steps:
        batches = epoch_batches(len(rows), position["epoch"], rank, world, cfg.batch_size, cfg.seed)
        while position["micro"] < len(batches) and position["step"] < steps:
            group = batches[position["micro"] : position["micro"] + cfg.grad_accum]
            step_loss, step_started = 0.0, time.perf_counter()
            for k, indices in enumerate(group):
                batch = to_device(spec.build_batch([rows[i] for i in indices], tokenizer, cfg), device)
                sync = contextlib.nullcontext() if k == len(group) - 1 or not hasattr(wrapped, "no_sync") else wrapped.no_sync()
                with sync, autocast:
                    loss = wrapped(batch) / len(group)
                loss.backward()
                step_loss += loss.item()
                window_tokens += batch.tokens
                train_tokens += batch.tokens
                truncated += batch.truncated
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            train_seconds += time.perf_counter() - step_started
            position["micro"] += len(group)
            position["step"] += 1
            window_loss += step_loss
            window_n += 1

            step = position["step"]
            if cfg.fail_at_step == step and rank == world - 1 and not fail_marker.exists():
                fail_marker.touch()  # TEST ONLY: die once, after this step's update, before its report
                os._exit(1)

            log_now = step % cfg.log_every == 0 or step == steps
            checkpoint_now = step % cfg.checkpoint_every == 0 or step == steps
            eval_now = evaluating and ((cfg.eval_every and step % cfg.eval_every == 0) or step == steps)
            if not (log_now or checkpoint_now or eval_now):
                continue
            loss_value = _mean_across_workers(window_loss / max(window_n, 1), world, device)
            tokens = _mean_across_workers(float(window_tokens), world, device) * world
            elapsed = time.perf_counter() - start_time
            position["tokens"] += int(tokens)
            done = step - start_step
            metrics = {
                "step": step, "total_steps": steps, "epoch": position["epoch"], "loss": loss_value,
                "lr": scheduler.get_last_lr()[0], "tokens_per_s": tokens / max(elapsed, 1e-9) if done else 0.0,
                "eta_s": elapsed / done * (steps - step) if done else None, "truncated_texts": truncated,
                "resumed_from": position["resumed_from"],
            }
            first_loss = loss_value if first_loss is None else first_loss
            last_loss = loss_value
            window_loss, window_n, window_tokens = 0.0, 0, 0
            start_time, start_step = time.perf_counter(), step
            if eval_now and curve is not None:
                metrics["heldout"] = curve.record(module, step, metrics, position["tokens"])
                model.train()
                start_time = time.perf_counter()  # tokens/s measures training, not the evaluation
            if rank == 0:
                eta = "-" if metrics["eta_s"] is None else f"{metrics['eta_s']:.0f}s"
                print(f"[gram-ray] step {step}/{steps} loss {loss_value:.4f} lr {metrics['lr']:.2e} "
                      f"tokens/s {metrics['tokens_per_s']:.0f} eta {eta}", flush=True)
            if checkpoint_now and rank == 0:
                with tempfile.TemporaryDirectory() as tmp:
                    save_checkpoint(Path(tmp), model, optimizer, scheduler, dict(position))
                    env.report(metrics, Path(tmp))
            else:
                env.report(metrics, None)
        if position["micro"] >= len(batches):
            position["epoch"] += 1
            position["micro"] = 0

    all_tokens = _mean_across_workers(float(train_tokens), world, device) * world  # a collective: every rank
    if rank == 0:
        summary = {
            "stage": cfg.stage, "steps": position["step"], "epochs_completed": position["epoch"], "rows": len(rows),
            "workers": world, "first_loss": first_loss, "final_loss": last_loss, "tokens": position["tokens"],
            "trainable_parameters": n_trainable, "resumed_from": position["resumed_from"], "truncated_texts": truncated,
            **machine, "train_seconds": train_seconds,
            "tokens_per_s": all_tokens / max(train_seconds, 1e-9),
        }
        if curve is not None and curve.last is not None:
            summary["heldout"] = curve.last
        final = save_final(cfg, model, tokenizer, source, summary)
        with atomic_writer(Path(cfg.output_dir) / "metrics.json") as f:
            json.dump({**summary, "final_model": str(final)}, f, indent=2)


def shares_prefix(cfg: TrainConfig, model: Any) -> bool:
    """Finetune batches share the judge instruction's key/value states (not with gradient
    checkpointing, which recomputes layers without a cache, nor with sliding-window layers)."""
    from gram_ray.scorer import prefix_sharing_supported

    return (cfg.stage == "finetune" and cfg.share_prefix and not cfg.gradient_checkpointing
            and prefix_sharing_supported(unwrap(model)))


class HeldOutCurve:
    """Accuracy, position-flip rate and ECE on the first ``eval_limit`` rows of ``eval_data``, each
    pair judged in both orders at the training budgets, appended to ``<output_dir>/curve.jsonl``.
    The "longer visible response" baseline on the same rows and budgets is recorded beside it."""

    def __init__(self, cfg: TrainConfig, tokenizer: Any, device: torch.device, autocast: Any, world: int):
        self.cfg, self.tokenizer, self.device, self.autocast, self.world = cfg, tokenizer, device, autocast, world
        self.rows, _ = read_pairs(cfg.eval_data, limit=cfg.eval_limit)
        self.rows = [r for r in self.rows if r.label is not None]
        self.path = Path(cfg.output_dir) / "curve.jsonl"
        self.longer = self._longer()
        self.length_baseline = sum(side == r.label for r, side in zip(self.rows, self.longer, strict=True)) / max(1, len(self.rows))
        self.last: dict[str, Any] | None = None

    def _longer(self) -> list[str | None]:
        from gram_ray.encoding import longer_visible

        return longer_visible(self.tokenizer, [r.pair.response_a for r in self.rows],
                              [r.pair.response_b for r in self.rows], self.cfg.max_response_tokens)

    @torch.no_grad()
    def record(self, module: VerdictLoss, step: int, train_metrics: dict[str, Any], tokens: int) -> dict[str, Any]:
        from gram_ray.eval.metrics import PairPrediction, length_split, pairs_metrics

        start = time.perf_counter()
        module.model.eval()
        predictions = []
        for row in self.rows:  # one pair (both orders) per forward: no padding on a CPU
            batch = verdict_batch([row], self.tokenizer, self.cfg.max_prompt_tokens, self.cfg.max_response_tokens)
            with self.autocast:
                p_first = torch.softmax(module.logits(to_device(batch, self.device)).float(), dim=-1)[:, 0].tolist()
            p_ab, p_ba = p_first[0], 1.0 - p_first[1]
            predictions.append(PairPrediction(row.label, judge.combine_orders(p_ab, p_ba), p_ab, p_ba))
        metrics = pairs_metrics(predictions)
        split = length_split([p.label for p in predictions], [p.p_a_better for p in predictions], self.longer)
        record = {
            "step": step, "pairs_seen": step * self.cfg.batch_size * self.cfg.grad_accum * self.world,
            "tokens": tokens, "train_loss": train_metrics["loss"], "lr": train_metrics["lr"],
            "accuracy": metrics["accuracy"], "accuracy_ci95": metrics["accuracy_ci95"], "flip_rate": metrics["flip_rate"],
            "ece": metrics["ece"], "n": metrics["n"], "length_baseline": self.length_baseline,
            # where the shorter visible response is the better one: what a length detector gets wrong
            "shorter_wins_accuracy": split["shorter_wins"]["accuracy"], "shorter_wins_n": split["shorter_wins"]["n"],
            "eval_seconds": time.perf_counter() - start, "time": time.time(),
        }
        with open(self.path, "a") as f:  # one line per evaluation, appended whole
            f.write(json.dumps(record) + "\n")
        print(f"[gram-ray] held-out @ step {step}: accuracy {record['accuracy']:.3f} flip {record['flip_rate']:.3f} "
              f"ECE {record['ece']:.3f} (length baseline {self.length_baseline:.3f}, n={record['n']}, "
              f"{record['eval_seconds']:.0f}s)", flush=True)
        self.last = record
        return record


def _mean_across_workers(value: float, world: int, device: torch.device) -> float:
    if world == 1 or not torch.distributed.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.item() / world
