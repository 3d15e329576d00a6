"""The typed training config: every field of ``train_configs/*.yaml``, validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class LoraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    last_layers: int | None = Field(
        None, gt=0, description="adapt only the last K decoder layers: no backward pass through the frozen rest"
    )


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Literal["pretrain", "finetune", "bt", "reasoner", "prover"] = Field(
        description="pretrain: generate both responses (stage 1); finetune: verdict loss (stage 2, also task "
        "adaptation); bt: scalar-head Bradley-Terry baseline; reasoner: GRAM-R² rationale then verdict; "
        "prover: GRAM-R² rationale for a given label"
    )
    model: str = Field(description="model spec: smollm2-135m, default, a directory, a PEFT adapter directory, …")
    data: list[str] = Field(description="JSONL(.gz) files (relative paths resolve against the config file)")
    output_dir: str = Field(description="checkpoints, metrics.json and the final model (<output_dir>/final)")

    # Scale
    launcher: Literal["ray", "local"] = Field(
        "ray", description="ray: a Ray Train job (workers, restarts, clusters); local: this one process, no Ray "
        "(num_workers=1; CUDA with use_gpu, else every CPU core): for a machine without Ray, e.g. a lone GPU box",
    )
    num_workers: int = Field(1, gt=0)
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = Field(
        None, description="Ray resources per worker; None = 1 GPU with use_gpu, else the cluster's CPUs split "
        "evenly over the workers (a worker's torch threads equal the CPUs it holds)",
    )
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="fsdp shards large models across GPUs")

    # Schedule
    max_steps: int = Field(0, ge=0, description="optimizer steps; 0 = run `epochs` epochs")
    epochs: int = Field(1, gt=0)
    batch_size: int = Field(4, gt=0, description="pairs (or sequences for pretrain) per worker per micro-batch")
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="linear warm-up over this share of the steps (step 1 already moves)")
    scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 0

    # Data
    max_prompt_tokens: int = Field(256, gt=0)
    max_response_tokens: int = Field(256, gt=0)
    max_rationale_tokens: int = Field(256, gt=0, description="reasoner/prover: rationale budget (keeps the start)")
    limit: int | None = Field(None, gt=0, description="use only the first N rows of each file")
    skip_bad_rows: bool = Field(False, description="skip (and count) malformed rows instead of stopping")

    # Loss
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    soft_labels: bool = Field(False, description="finetune: train on prob_a where rows have it")
    both_orders: bool = Field(True, description="finetune/reasoner/prover: use each pair in both orders")
    order_consistency: float = Field(
        0.0, ge=0, description="finetune: weight of the squared position effect per pair (the two orders' margins "
        "should be opposite; needs both_orders); 0 = off",
    )

    # Model update
    lora: LoraConfig | None = Field(default_factory=LoraConfig, description="null = full fine-tuning")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="compute dtype (autocast); auto = bf16 on CUDA / bf16-capable CPUs; weights stay fp32"
    )
    gradient_checkpointing: bool = False
    share_prefix: bool = Field(
        True, description="finetune: run the judge instruction once per micro-batch and share its key/value "
        "states (same loss and gradients, less compute; off with gradient checkpointing)",
    )
    unpadded: bool | None = Field(
        None, description="run each set of equal-length sequences of a micro-batch (stage 2: a pair's two orders; "
        "other stages: as a rule one sequence) on its own, without padding (same loss and gradients); null = on a "
        "CPU, where every padded token costs, not on a GPU, where one wide batch pays",
    )

    # Held-out curve (finetune): accuracy, position-flip rate and ECE every eval_every steps → curve.jsonl
    eval_data: str | None = Field(None, description="labeled pairs scored during training (a held-out split)")
    eval_every: int = Field(0, ge=0, description="steps between curve evaluations; 0 = only at the end when eval_data is set")
    eval_limit: int | None = Field(300, gt=0, description="first N rows of eval_data")

    # Bookkeeping
    resume_from: str | None = Field(
        None, description="a checkpoint directory (holding trainer_state.pt), or 'latest' = the newest one under "
        "output_dir from any earlier run: weights, optimizer, schedule and data position continue from it",
    )
    checkpoint_every: int = Field(50, gt=0)
    keep_checkpoints: int = Field(2, gt=0)
    log_every: int = Field(10, gt=0)
    max_failures: int = Field(0, ge=-1, description="worker failures survived by resuming (-1 = unlimited)")
    fail_at_step: int | None = Field(None, description="TEST ONLY: kill a worker once at this step")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if not self.data:
            raise ValueError("data: at least one file")
        if self.order_consistency > 0 and not self.both_orders:
            raise ValueError("order_consistency: needs both_orders (it compares each pair's two orders)")
        return self


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key=value`` (dotted keys for nesting, values parsed as YAML): ``lora.r=8``, ``lora=null``."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        target = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[parts[-1]] = _parse_value(value)
    return raw


def resolve_project_paths(
    raw: dict[str, Any], base: Path, files: tuple[str, ...] = (), dirs: tuple[str, ...] = (), models: tuple[str, ...] = (),
) -> None:
    """Make a config's relative paths absolute against ``base`` (the project root), in place.

    ``files``: a path or a list of paths (a single one becomes a list); ``dirs``: one path;
    ``models``: a model spec, made absolute when it is a local path (exists under ``base``, starts
    with ./ or ../, or has more than the two parts of a hub id ``org/name``, e.g. runs/x/final that
    an earlier job will write), so hub ids and built-in names stay as given. Ray Train workers
    and Ray Data actors run in other working directories, hence absolute paths.
    """
    for key in files:
        if isinstance(raw.get(key), str):
            raw[key] = [raw[key]]
        for i, item in enumerate(raw.get(key) or []):
            if isinstance(item, str) and not Path(item).is_absolute():
                raw[key][i] = str((base / item).resolve())
    for key in dirs:
        if isinstance(raw.get(key), str) and not Path(raw[key]).is_absolute():
            raw[key] = str((base / raw[key]).resolve())
    for key in models:
        model = raw.get(key)
        if not isinstance(model, str) or Path(model).is_absolute():
            continue
        if model.startswith(("./", "../")) or len(Path(model).parts) > 2 or (base / model).exists():
            raw[key] = str((base / model).resolve())


def read_config(path: str | Path, overrides: list[str] | None = None) -> tuple[dict[str, Any], Path]:
    """A YAML config's mapping with ``--set`` overrides applied, and the project root it is relative to
    (the config folder's parent: the project root for ``train_configs/*.yaml``)."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return apply_overrides(raw, overrides or []), path.resolve().parent.parent


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Load a YAML training config; relative data paths, output_dir and local model paths resolve
    against the project root."""
    raw, base = read_config(path, overrides)
    resolve_project_paths(raw, base, files=("data",), dirs=("output_dir", "eval_data"), models=("model",))
    if raw.get("resume_from") not in (None, "latest"):
        resolve_project_paths(raw, base, dirs=("resume_from",))
    return TrainConfig(**raw)
