"""Shared fixtures: the real SmolLM2 tokenizer and tiny randomly initialised causal LMs."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smol_tokenizer():
    """The real SmolLM2 tokenizer (with its chat template), from the embedded model's cache."""
    from gram_ray.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model("smollm2-135m"))


def tiny_llama(tokenizer, seed: int = 0, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        **overrides,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_model(smol_tokenizer):
    return tiny_llama(smol_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smol_tokenizer, tiny_model):
    """The tiny model saved as a normal Hugging Face directory (usable as a model spec)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model.save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path


@pytest.fixture()
def scorer(tiny_model, smol_tokenizer):
    from gram_ray.scorer import GramScorer, ScorerConfig

    return GramScorer(tiny_model, smol_tokenizer, ScorerConfig(dtype="float32"))


@pytest.fixture(scope="session")
def labeled_rows():
    """A small slice of the real labeled training pairs."""
    from pathlib import Path

    from gram_ray.data import read_pairs

    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train_labeled.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found (the shared data lives beside the checkout)")
    rows, _ = read_pairs(path, limit=6)
    return rows


def post_json(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    """POST a JSON body; the HTTP status and the JSON answer (error statuses included)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
