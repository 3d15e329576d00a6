"""GRAM-R²: generation, voting through the scorer, and the reasoner/prover training examples."""

from __future__ import annotations

import pytest
import torch

from gram_ray import judge, reasoning
from gram_ray.data import PairRow
from gram_ray.judge import Pair
from gram_ray.reasoning import Generated, SamplingConfig
from gram_ray.scorer import GramScorer, ScorerConfig
from gram_ray.train.examples import rationale_batch

GREEDY = SamplingConfig(max_new_tokens=6, temperature=0.0, batch_size=2)


def test_batched_left_padded_generation_equals_one_at_a_time(tiny_model, smol_tokenizer):
    contents = ["short", "a much longer user turn that needs left padding in a batch", "mid length text"]
    batched = reasoning.generate(tiny_model, smol_tokenizer, contents, GREEDY)
    single = [reasoning.generate(tiny_model, smol_tokenizer, [c], GREEDY).texts[0] for c in contents]
    assert batched.texts == single
    assert 0 < batched.new_tokens <= 6 * len(contents)


def test_sampling_gives_k_samples_and_is_reproducible_with_a_seed(tiny_model, smol_tokenizer):
    sampling = SamplingConfig(max_new_tokens=8, temperature=1.0, top_p=1.0, seed=3)
    first = reasoning.generate(tiny_model, smol_tokenizer, ["q1", "q2"], sampling, num_samples=4)
    again = reasoning.generate(tiny_model, smol_tokenizer, ["q1", "q2"], sampling, num_samples=4)
    assert [len(s) for s in first.texts] == [4, 4] and first.texts == again.texts
    assert len(set(first.texts[0])) > 1  # sampled, not greedy


def test_samples_sharing_one_prompt_prefill_equal_repeated_prefills(tiny_model, smol_tokenizer):
    contents = ["short", "a much longer user turn that needs left padding in a batch", "mid length text"]
    sampling = SamplingConfig(max_new_tokens=8, temperature=1.0, top_p=0.95, seed=5, batch_size=2)
    shared = reasoning.generate(tiny_model, smol_tokenizer, contents, sampling, num_samples=3)
    repeated = reasoning.generate(tiny_model, smol_tokenizer, contents, sampling, num_samples=3, share_prefill=False)
    assert shared.texts == repeated.texts and shared.new_tokens == repeated.new_tokens
    greedy_k = reasoning.generate(tiny_model, smol_tokenizer, contents, GREEDY, num_samples=3)
    greedy_1 = reasoning.generate(tiny_model, smol_tokenizer, contents, GREEDY)
    assert greedy_k.texts == [t * 3 for t in greedy_1.texts]


def _fake_generate(outputs_by_order):
    """A generate() that answers each prompt from a table keyed by which response is shown first."""

    def fake(model, tokenizer, contents, sampling, num_samples=1):
        texts = []
        for content in contents:
            first = judge.visible(content).split("[The Start of Assistant A's Answer]\n", 1)[1].split("\n", 1)[0]
            texts.append(outputs_by_order[first][:num_samples])
        return Generated(texts, new_tokens=7 * num_samples * len(contents))

    return fake


def test_votes_are_counted_in_the_callers_terms(monkeypatch, scorer):
    # Pair (good, bad). Order ab shows "good" first, order ba shows "bad" first; in ba the model's
    # "A" means the bad response, so it must count as a vote for B (response_b) and vice versa.
    outputs = {
        "good": ["<think>Assistant A is right.</think><answer>A</answer>", "<answer>A</answer>", "garbled"],
        "bad": ["<think>Assistant B is right.</think><answer>B</answer>", "<think>Assistant A wins</think><answer>A</answer>", "<answer>B</answer>"],
    }
    monkeypatch.setattr(reasoning, "generate", _fake_generate(outputs))
    (result,) = scorer.score_reasoning([Pair("q", "good", "bad")], votes=3, orders="both")
    ab = [r for r in result.rationales if r.order == "ab"]
    ba = [r for r in result.rationales if r.order == "ba"]
    assert [r.verdict for r in ab] == ["A", "A", None] and [r.verdict for r in ba] == ["A", "B", "A"]
    # ba texts are rewritten to the caller's names: "Assistant B" (shown second there = good) → A
    assert ba[0].text == "Assistant A is right." and ba[1].text == "Assistant B wins"
    assert result.unparsed == 1
    assert result.p_a_better == pytest.approx(4 / 5)  # A votes: 2 (ab) + 2 (ba); B: 1
    assert result.p_ab == pytest.approx(1.0) and result.p_ba == pytest.approx(2 / 3)
    assert scorer.stats.unparsed == 1 and scorer.stats.generated_tokens == 2 * 7 * 3
    assert result.as_dict()["rationales"][0] == {"verdict": "A", "order": "ab", "text": "Assistant A is right."}


def test_a_tie_falls_back_to_the_verdict_token_probability(monkeypatch, scorer):
    outputs = {"x": ["<answer>A</answer>", "<answer>B</answer>"], "y": ["nonsense", "more nonsense"]}
    monkeypatch.setattr(reasoning, "generate", _fake_generate(outputs))
    (result,) = scorer.score_reasoning([Pair("q", "x", "y")], votes=2, orders="both")
    (tokens,) = scorer.score([Pair("q", "x", "y")], orders="both")
    assert result.p_a_better == pytest.approx(tokens.p_a_better, abs=1e-6)  # 1 A, 1 B, 2 unparsed
    assert result.p_ab == pytest.approx(tokens.p_ab, abs=1e-6) and result.unparsed == 2


def test_reasoning_with_a_real_tiny_model_never_crashes(scorer):
    pairs = [Pair("What is 2+2?", "4", "5"), Pair([{"role": "user", "content": "hi"}], "hello", "go away")]
    results = scorer.score_reasoning(pairs, votes=2, orders="both", sampling=SamplingConfig(max_new_tokens=5, seed=0))
    for r in results:
        assert len(r.rationales) == 4 and 0.0 <= r.p_a_better <= 1.0
        assert r.unparsed == sum(x.verdict is None for x in r.rationales)
    with pytest.raises(ValueError, match="votes"):
        scorer.score_reasoning(pairs, votes=0)


def _row(label="A", rationale="Assistant A is correct; Assistant B is not."):
    return PairRow(line=3, pair=Pair("Q?", "first answer", "second answer"), label=label, rationale=rationale)


@pytest.mark.parametrize("stage", ["reasoner", "prover"])
def test_rationale_batch_targets_and_swapped_order(stage, smol_tokenizer):
    batch = rationale_batch(stage, [_row()], smol_tokenizer, 64, 64, 64, both_orders=True)
    assert batch.input_ids.shape[0] == 2 and batch.labels.shape == batch.input_ids.shape
    texts = []
    for ids, labels in zip(batch.input_ids.tolist(), batch.labels.tolist(), strict=True):
        start = next(i for i, lab in enumerate(labels) if lab != -100)  # the prompt is not trained on
        target = [t for t, lab in zip(ids, labels, strict=True) if lab != -100]
        assert start > 0 and ids[start:start + len(target)] == target
        texts.append((smol_tokenizer.decode(ids[:start]), smol_tokenizer.decode(target)))
    (prompt_ab, target_ab), (prompt_ba, target_ba) = texts
    assert prompt_ab.index("first answer") < prompt_ab.index("second answer")
    assert prompt_ba.index("second answer") < prompt_ba.index("first answer")
    assert "Assistant A is correct; Assistant B is not." in target_ab
    assert "Assistant B is correct; Assistant A is not." in target_ba  # names follow the swap
    if stage == "reasoner":
        assert judge.parse_answer(target_ab) == "A" and judge.parse_answer(target_ba) == "B"
    else:
        assert "<answer>" not in target_ab
        assert "assistant A answered better" in prompt_ab and "assistant B answered better" in prompt_ba
    assert target_ab.endswith(smol_tokenizer.eos_token)


def test_rationale_batch_needs_rationales(smol_tokenizer):
    with pytest.raises(ValueError, match="line 3: rationale: missing"):
        rationale_batch("reasoner", [_row(rationale=None)], smol_tokenizer, 64, 64, 64)


def test_reasoner_loss_trains(tiny_llama_factory, smol_tokenizer):
    from gram_ray.train.config import TrainConfig
    from gram_ray.train.stages import stage

    model = tiny_llama_factory()
    cfg = TrainConfig(stage="reasoner", model="unused", data=["unused.jsonl"], output_dir="/tmp/unused")
    module = stage("reasoner").objective(model, [], cfg, None)
    batch = rationale_batch("reasoner", [_row(), _row("B", "Assistant B is right.")], smol_tokenizer, 32, 32, 32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = module(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.fixture()
def scorer(tiny_model, smol_tokenizer):
    return GramScorer(tiny_model, smol_tokenizer, ScorerConfig(dtype="float32"))


@pytest.fixture()
def tiny_llama_factory(smol_tokenizer):
    from conftest import tiny_llama

    return lambda: tiny_llama(smol_tokenizer, seed=1)
