import pytest
import torch
from conftest import tiny_llama

from gram_ray.encoding import pack_batches
from gram_ray.judge import Pair
from gram_ray.scorer import GramScorer, ScorerConfig

PAIRS = [
    Pair("What is 2 + 2?", "4", "5"),
    Pair("Name a colour.", "Blue, the colour of a clear sky at noon. " * 12, "Red."),
    Pair([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye?"}], "Bye!", "Ciao, see you " * 5),
    Pair("Write a haiku.", "Leaves fall\nsilent pond\nfrog", "I cannot."),
]


def test_scores_are_probabilities(scorer):
    for result in scorer.score(PAIRS):
        assert 0.0 <= result.p_a_better <= 1.0
        assert 0.0 <= result.p_ab <= 1.0 and 0.0 <= result.p_ba <= 1.0
        assert result.p_a_better == pytest.approx((result.p_ab + result.p_ba) / 2)


def test_swapping_the_pair_complements_each_order_and_the_average(scorer):
    forward = scorer.score(PAIRS)
    swapped = scorer.score([Pair(p.prompt, p.response_b, p.response_a) for p in PAIRS])
    for f, s in zip(forward, swapped, strict=True):
        assert f.p_ab == pytest.approx(1.0 - s.p_ba, abs=1e-6)
        assert f.p_ba == pytest.approx(1.0 - s.p_ab, abs=1e-6)
        assert f.p_a_better == pytest.approx(1.0 - s.p_a_better, abs=1e-6)


def test_batched_equals_one_at_a_time(scorer):
    batched = scorer.score(PAIRS)
    single = [scorer.score([p])[0] for p in PAIRS]
    for b, s in zip(batched, single, strict=True):
        assert b.p_ab == pytest.approx(s.p_ab, abs=1e-5)
        assert b.p_ba == pytest.approx(s.p_ba, abs=1e-5)


def test_length_sorting_returns_input_order(tiny_model, smol_tokenizer):
    # A tiny token budget forces one sequence per batch, processed longest first.
    small = GramScorer(tiny_model, smol_tokenizer, ScorerConfig(dtype="float32", max_batch_tokens=1))
    reordered = small.score(PAIRS)
    assert small.stats.batches == 2 * len(PAIRS)
    for pair, result in zip(PAIRS, reordered, strict=True):
        alone = small.score([pair])[0]
        assert result.p_ab == pytest.approx(alone.p_ab, abs=1e-5)


def test_shared_prefix_matches_the_plain_forward(tiny_model, smol_tokenizer, scorer):
    plain = GramScorer(tiny_model, smol_tokenizer, ScorerConfig(dtype="float32", share_prefix=False))
    assert scorer.info()["shared_prefix_tokens"] > 100 and plain.info()["shared_prefix_tokens"] == 0
    for a, b in zip(scorer.score(PAIRS), plain.score(PAIRS), strict=True):
        assert a.p_ab == pytest.approx(b.p_ab, abs=1e-5)
        assert a.p_ba == pytest.approx(b.p_ba, abs=1e-5)


def test_orders_ab_only(scorer):
    (result,) = scorer.score(PAIRS[:1], orders="ab")
    assert result.p_ba is None and result.p_a_better == result.p_ab
    with pytest.raises(ValueError, match="orders"):
        scorer.score(PAIRS[:1], orders="ba")


def test_truncation_keeps_the_start_and_is_counted(tiny_model, smol_tokenizer):
    short = GramScorer(tiny_model, smol_tokenizer, ScorerConfig(dtype="float32", max_response_tokens=5, max_prompt_tokens=3))
    results = short.score(PAIRS[:2])
    assert results[0].truncated.prompt is True  # "What is 2 + 2?" is more than 3 tokens
    assert results[0].truncated.response_a is False and results[0].truncated.response_b is False
    assert results[1].truncated.response_a is True and results[1].truncated.response_b is False
    assert short.stats.truncated_responses == 1 and short.stats.truncated_prompts == 2
    (cut,), flags = short.truncate_texts(["Blue, the colour of a clear sky"], 3)
    assert flags == [True] and "Blue, the colour of a clear sky".startswith(cut) and 0 < len(cut) < 20
    # Truncated text is exactly what scoring the pre-truncated pair gives.
    same = short.score([Pair(PAIRS[1].prompt, cut_text(short, PAIRS[1].response_a, 5), PAIRS[1].response_b)])
    assert same[0].p_ab == pytest.approx(results[1].p_ab, abs=1e-5)


def cut_text(scorer, text, n):
    return scorer.truncate_texts([text], n)[0][0]


def _full_vocab_probability(model, ids, tokens):
    logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    return torch.softmax(logits[[tokens.a, tokens.b]], dim=-1)[0].item(), torch.softmax(logits, -1)[[tokens.a, tokens.b]]


@pytest.mark.parametrize("arch", ["llama", "gemma2-softcap"])
def test_two_row_head_equals_full_vocab_softmax_restricted(arch, smol_tokenizer):
    if arch == "llama":
        model = tiny_llama(smol_tokenizer, seed=1)
    else:
        from transformers import Gemma2Config, Gemma2ForCausalLM

        torch.manual_seed(2)
        model = Gemma2ForCausalLM(
            Gemma2Config(
                vocab_size=len(smol_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, final_logit_softcapping=0.5,
                pad_token_id=smol_tokenizer.pad_token_id,
            )
        ).eval()
    scorer = GramScorer(model, smol_tokenizer, ScorerConfig(dtype="float32"))
    for pair in PAIRS[:2]:
        ids = scorer.encode(pair, "ab")
        expected, full = _full_vocab_probability(model, ids, scorer.tokens)
        (got,) = scorer.verdict_probabilities([ids])
        assert got == pytest.approx(expected, abs=1e-5)
        # The restricted softmax is the full softmax renormalised over the two tokens.
        assert got == pytest.approx((full[0] / full.sum()).item(), abs=1e-5)


def test_pack_batches_respects_the_budget_and_keeps_everything():
    lengths = [5, 50, 7, 30, 30, 200]
    batches = pack_batches(lengths, max_batch_tokens=64, max_batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [5]  # longer than the budget: alone, never dropped
    for batch in batches[1:]:
        assert len(batch) <= 3 and max(lengths[i] for i in batch) * len(batch) <= 64


def test_scores_real_pairs_with_long_responses(scorer, labeled_rows):
    results = scorer.score([r.pair for r in labeled_rows])
    assert len(results) == len(labeled_rows)
    assert all(0.0 <= r.p_a_better <= 1.0 for r in results)


def test_budgets_default_to_the_models_training_record(tiny_model_dir, tmp_path):
    """A judge is served at the token budgets it was trained at (gram_training.json beside the model),
    unless the config says otherwise; a model without a record gets 1,024."""
    import json
    import shutil

    trained = tmp_path / "trained"
    shutil.copytree(tiny_model_dir, trained)
    (trained / "gram_training.json").write_text(json.dumps({"config": {"max_prompt_tokens": 192, "max_response_tokens": 256}}))
    scorer = GramScorer.from_config(ScorerConfig(model=str(trained), dtype="float32"))
    assert (scorer.config.max_prompt_tokens, scorer.config.max_response_tokens) == (192, 256)
    assert scorer.info()["max_response_tokens"] == 256
    (truncated,) = scorer.score([Pair("q", "word " * 300, "short")])
    assert truncated.truncated.response_a and not truncated.truncated.response_b
    override = GramScorer.from_config(ScorerConfig(model=str(trained), dtype="float32", max_response_tokens=512))
    assert override.config.max_response_tokens == 512 and override.config.max_prompt_tokens == 192
    plain = GramScorer.from_config(ScorerConfig(model=str(tiny_model_dir), dtype="float32"))
    assert (plain.config.max_prompt_tokens, plain.config.max_response_tokens) == (1024, 1024)
