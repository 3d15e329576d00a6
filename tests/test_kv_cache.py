"""The three places that reuse a computed key/value cache (the scorer's and the training module's
shared judge prefix, reasoning's shared prefill) call this transformers by the cache's own name:
the old ``past_key_values`` warns on every call in transformers 5.x and leaves ``forward`` in 5.40."""

from __future__ import annotations

import logging
import warnings

import torch
from transformers.modeling_outputs import BaseModelOutputWithPast

from gram_ray import judge, kv_cache, reasoning
from gram_ray.data import PairRow
from gram_ray.judge import Pair
from gram_ray.reasoning import SamplingConfig
from gram_ray.scorer import GramScorer, ScorerConfig
from gram_ray.train.examples import verdict_batch
from gram_ray.train.modules import VerdictLoss


def test_the_cache_name_is_the_one_this_transformers_uses():
    fields = BaseModelOutputWithPast.__dataclass_fields__
    assert kv_cache.name() in fields
    assert kv_cache.name() == ("cache" if "cache" in fields else "past_key_values")


def test_prefix_caches_are_reused_without_deprecated_keywords(tiny_model, smol_tokenizer, caplog):
    logging.Logger.warning_once.cache_clear()  # transformers logs each deprecation once a process
    pairs = [Pair("What is 2 + 2?", "4", "5"), Pair("Name a colour.", "Blue.", "Red, like a ripe tomato.")]
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        scorer = GramScorer(tiny_model, smol_tokenizer, ScorerConfig(dtype="float32"))
        assert scorer.info()["shared_prefix_tokens"] > 100
        scorer.score(pairs)
        loss = VerdictLoss(tiny_model, scorer.tokens.ids, 0.1, judge.verdict_prefix_ids(smol_tokenizer))
        batch = verdict_batch([PairRow(i, p, label="A") for i, p in enumerate(pairs)], smol_tokenizer, 64, 16)
        assert loss._shares_prefix(batch)
        with torch.no_grad():
            loss(batch)
        sampling = SamplingConfig(max_new_tokens=4, temperature=1.0, seed=0)
        reasoning.generate(tiny_model, smol_tokenizer, ["a question"], sampling, num_samples=2)  # shared prefill
    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [s for s in said if "past_key_values" in s], said
