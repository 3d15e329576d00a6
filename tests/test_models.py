import json
from pathlib import Path

import pytest
import torch

from gram_ray.judge import Pair
from gram_ray.models import (
    ModelSpecError,
    load_causal_lm,
    resolve_attn_implementation,
    resolve_dtype,
    resolve_model,
)
from gram_ray.scorer import GramScorer, ScorerConfig


def test_embedded_backbone_is_converted_once_into_the_cache(smol_tokenizer):
    source = resolve_model("smollm2-135m")
    path = Path(source.path)
    assert source.kind == "embedded" and (path / "model.safetensors").is_file()
    assert (path / "chat_template.jinja").is_file() or "chat_template" in (path / "tokenizer_config.json").read_text()
    stamp = (path / "model.safetensors").stat().st_mtime
    assert resolve_model("smollm2-135m").path == source.path
    assert (path / "model.safetensors").stat().st_mtime == stamp  # not converted again


def test_default_is_the_packaged_gram_adapter_over_the_embedded_backbone():
    from gram_ray.models import PACKAGED_DEFAULT_DIR

    assert (PACKAGED_DEFAULT_DIR / "adapter_config.json").is_file(), "the trained default model must ship"
    source = resolve_model("default")
    assert source.kind == "peft" and source.spec == "default" and not source.untrained
    assert source.base.path == resolve_model("smollm2-135m").path  # the adapter's base, found on this machine


def test_default_without_a_packaged_model_warns_that_it_is_untrained(monkeypatch, tmp_path):
    import gram_ray.models as models

    monkeypatch.setattr(models, "PACKAGED_DEFAULT_DIR", tmp_path / "empty")
    with pytest.warns(UserWarning, match="untrained"):
        source = resolve_model("default")
    assert source.untrained and source.path == resolve_model("smollm2-135m").path


def test_local_directory_and_peft_adapter(tmp_path, tiny_model_dir, smol_tokenizer):
    from peft import LoraConfig, get_peft_model

    assert resolve_model(str(tiny_model_dir)).kind == "local"
    base = load_causal_lm(resolve_model(str(tiny_model_dir)))
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir)

    source = resolve_model(str(adapter_dir))
    assert source.kind == "peft" and source.base.kind == "local" and source.describe()["adapter"] == str(adapter_dir)
    scorer = GramScorer.from_config(ScorerConfig(model=str(adapter_dir), dtype="float32"))
    plain = GramScorer.from_config(ScorerConfig(model=str(tiny_model_dir), dtype="float32"))
    pair = [Pair("q", "a", "b")]
    # The adapter is applied: its non-zero LoRA weights change the verdict.
    assert scorer.score(pair)[0].p_ab != pytest.approx(plain.score(pair)[0].p_ab, abs=1e-7)
    # For inference the adapter is merged into the base: no LoRA layers left, the same verdict as the
    # unmerged PEFT model computes.
    assert not any("lora" in name for name, _ in scorer.model.named_modules())
    unmerged = GramScorer(load_causal_lm(source, is_trainable=True).eval(), scorer.tokenizer, ScorerConfig(dtype="float32"))
    assert scorer.score(pair)[0].p_ab == pytest.approx(unmerged.score(pair)[0].p_ab, abs=1e-6)


def test_bad_specs_fail_clearly(tmp_path):
    with pytest.raises(ModelSpecError, match="empty"):
        resolve_model(" ")
    with pytest.raises(ModelSpecError, match="not a known spec"):
        resolve_model("no-such-model")
    with pytest.raises(ModelSpecError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelSpecError, match="without config.json"):
        resolve_model(str(tmp_path))


def test_hub_id_without_network_gives_a_clear_message():
    import os
    import subprocess
    import sys

    assert resolve_model("wangclnlp/GRAM-Qwen3-1.7B-RewardModel").kind == "hub"
    # HF_HUB_OFFLINE (read at import) gives the same failure as no network, without retry delays.
    code = (
        "from gram_ray.models import resolve_model, load_tokenizer\n"
        "load_tokenizer(resolve_model('wangclnlp/GRAM-Qwen3-1.7B-RewardModel'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode != 0
    assert "ModelSpecError" in proc.stderr and "'default', 'smollm2-135m'" in proc.stderr


def test_dtype_and_attention_resolution():
    cpu = torch.device("cpu")
    assert resolve_dtype("float32", cpu) == torch.float32
    assert resolve_dtype("auto", cpu) in (torch.float32, torch.bfloat16)
    with pytest.raises(ModelSpecError):
        resolve_dtype("int3", cpu)
    assert resolve_attn_implementation("auto", cpu, torch.float32) == "sdpa"
    assert resolve_attn_implementation("eager", cpu, torch.float32) == "eager"


def test_adapter_whose_embedded_base_path_is_missing_falls_back_to_the_embedded_backbone(tmp_path, smol_tokenizer):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/elsewhere/.cache/gram-ray/models/smollm2-135m"}))
    source = resolve_model(str(adapter))
    assert source.kind == "peft" and source.base.spec == "smollm2-135m" and source.base.kind == "embedded"
