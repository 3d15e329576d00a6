"""The stage losses against the plain full-vocabulary computations they replace."""

import warnings

import pytest
import torch

from gram_ray.data import PairRow
from gram_ray.judge import Pair
from gram_ray.losses import masked_lm_loss, order_consistency_penalty, verdict_loss
from gram_ray.scorer import GramScorer, ScorerConfig
from gram_ray.train.examples import bt_batch, pretrain_batch, verdict_batch
from gram_ray.train.modules import BradleyTerryLoss, ResponseLMLoss, VerdictLoss, length_groups

ROWS = [
    PairRow(1, Pair("What is 2+2?", "4", "five, I think"), label="A", prob_a=0.9),
    PairRow(2, Pair("Name a colour.", "Blue " * 30, "Red."), label="B", prob_a=0.2),
]


def test_verdict_batch_uses_both_orders_and_flips_targets(smol_tokenizer):
    batch = verdict_batch(ROWS, smol_tokenizer, 64, 16, both_orders=True)
    assert batch.input_ids.shape[0] == 4 and batch.target.tolist() == [0, 1, 1, 0]
    soft = verdict_batch(ROWS, smol_tokenizer, 64, 16, both_orders=True, soft_labels=True)
    assert soft.target.tolist() == pytest.approx([0.9, 0.1, 0.2, 0.8])
    assert batch.truncated == 1  # "Blue " * 30 is over 16 tokens


def test_verdict_module_matches_the_scorer_and_the_loss(tiny_model, smol_tokenizer):
    scorer = GramScorer(tiny_model, smol_tokenizer, ScorerConfig(dtype="float32", max_response_tokens=16, max_prompt_tokens=64))
    module = VerdictLoss(tiny_model, scorer.tokens.ids, label_smoothing=0.1)
    batch = verdict_batch(ROWS, smol_tokenizer, 64, 16)
    with torch.no_grad():
        logits = module.logits(batch)
        p_first = torch.softmax(logits, -1)[:, 0]
        expected = scorer.score([r.pair for r in ROWS])
        assert p_first[0].item() == pytest.approx(expected[0].p_ab, abs=1e-5)
        assert 1 - p_first[1].item() == pytest.approx(expected[0].p_ba, abs=1e-5)
        assert module(batch).item() == pytest.approx(verdict_loss(logits, batch.target, 0.1).item(), abs=1e-6)
        consistent = VerdictLoss(tiny_model, scorer.tokens.ids, label_smoothing=0.1, order_consistency=0.5)
        assert consistent(batch).item() == pytest.approx(
            verdict_loss(logits, batch.target, 0.1).item() + 0.5 * order_consistency_penalty(logits).item(), abs=1e-6)


def test_response_lm_loss_equals_the_full_vocab_masked_loss(tiny_model, smol_tokenizer):
    batch = pretrain_batch(ROWS, smol_tokenizer, 64, 16)
    assert (batch.labels != -100).sum() < batch.attention_mask.sum()  # the prompt is not a target
    with torch.no_grad():
        full = tiny_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        assert ResponseLMLoss(tiny_model)(batch).item() == pytest.approx(masked_lm_loss(full, batch.labels).item(), abs=1e-5)


def _loss_and_grads(model, module, batch):
    model.zero_grad()
    loss = module(batch)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(reference, other):
    (loss, grads), (other_loss, other_grads) = reference, other
    assert grads and other_loss == pytest.approx(loss, abs=1e-5)
    assert other_grads.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(other_grads[name], grad, atol=1e-5, rtol=1e-4)


def test_unpadded_lm_and_bradley_terry_losses_equal_the_padded_batch(smol_tokenizer):
    """Stage 1 / GRAM-R² (every target token of the micro-batch averaged) and the Bradley-Terry
    baseline (rewards back in row order) give the padded batch's loss and gradients unpadded."""
    from conftest import tiny_llama
    from transformers import LlamaForSequenceClassification

    lm = tiny_llama(smol_tokenizer, seed=1)
    batch = pretrain_batch(ROWS, smol_tokenizer, 64, 16)
    assert len(set(batch.lengths.tolist())) == 2
    _assert_same(_loss_and_grads(lm, ResponseLMLoss(lm, unpadded=False), batch),
                 _loss_and_grads(lm, ResponseLMLoss(lm), batch))  # a CPU's default: unpadded

    torch.manual_seed(2)
    bt = LlamaForSequenceClassification(tiny_llama(smol_tokenizer, seed=2, num_labels=1).config)
    rows = [*ROWS, PairRow(3, Pair("What is 2+2?", "4", "five, I think"), label="A")]  # row 0 again
    batch = bt_batch(rows, smol_tokenizer, 64, 16)
    assert [g.tolist() for g in length_groups(batch, None)] == [[0, 4], [1, 5], [2], [3]]  # out of row order
    padded, unpadded = BradleyTerryLoss(bt, unpadded=False), BradleyTerryLoss(bt)
    with torch.no_grad():
        torch.testing.assert_close(unpadded.rewards(batch), padded.rewards(batch), atol=1e-5, rtol=1e-4)
    _assert_same(_loss_and_grads(bt, padded, batch), _loss_and_grads(bt, unpadded, batch))


def test_gradient_checkpointing_with_lora_trains_only_the_adapter(tiny_model_dir, smol_tokenizer):
    from gram_ray.train.config import TrainConfig
    from gram_ray.train.loop import build_model

    cfg = TrainConfig(
        stage="finetune", model=str(tiny_model_dir), data=["unused.jsonl"], output_dir="/tmp/unused",
        gradient_checkpointing=True, lora={"r": 4, "alpha": 8, "last_layers": 1},
    )
    with warnings.catch_warnings():
        # Switched on by this transformers' own name (peft's own deprecated reads are not ours).
        warnings.filterwarnings("error", message=".*gradient_checkpointing_enable", category=FutureWarning)
        model, tokenizer, _ = build_model(cfg, torch.device("cpu"))
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())  # the decoder's switch
    model.train()
    module = VerdictLoss(model, GramScorer(model, tokenizer, ScorerConfig(dtype="float32")).tokens.ids, 0.1)
    module(verdict_batch(ROWS, tokenizer, 64, 16)).backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained and all("lora_" in n and ".layers.1." in n for n in trained)
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)


def test_shared_prefix_and_unpadded_groups_give_the_padded_full_sequence_loss_and_gradients(tiny_model_dir, smol_tokenizer):
    """The judge instruction's states computed once per batch (gradients flowing through them), and
    each length's sequences run on their own without padding (the CPU's default), give the loss and
    the gradients of one padded batch of whole sequences."""
    from gram_ray import judge
    from gram_ray.train.config import TrainConfig
    from gram_ray.train.loop import build_model

    cfg = TrainConfig(stage="finetune", model=str(tiny_model_dir), data=["unused.jsonl"], output_dir="/tmp/unused",
                      lora={"r": 4, "alpha": 8, "dropout": 0.0})
    model, tokenizer, _ = build_model(cfg, torch.device("cpu"))
    model.train()
    ids = GramScorer(model, tokenizer, ScorerConfig(dtype="float32")).tokens.ids
    prefix = judge.verdict_prefix_ids(tokenizer)
    assert len(prefix) > 100
    rows = [*ROWS, PairRow(3, Pair("What is 3+3?", "six, I think", "6"), label="B")]  # row 1's length between equal ones
    batch = verdict_batch(rows, tokenizer, 64, 16)
    lengths = batch.lengths.tolist()
    assert lengths[0] == lengths[1] == lengths[4] == lengths[5] != lengths[2] == lengths[3]  # padding to undo
    variants = {
        "padded, whole": VerdictLoss(model, ids, 0.1, unpadded=False),
        "unpadded, whole": VerdictLoss(model, ids, 0.1, unpadded=True),
        "padded, shared prefix": VerdictLoss(model, ids, 0.1, prefix, unpadded=False),
        "unpadded, shared prefix": VerdictLoss(model, ids, 0.1, prefix),  # a CPU's default
    }
    assert variants["unpadded, shared prefix"]._shares_prefix(batch)
    assert [g.tolist() for g in length_groups(batch, None)] == [[0, 1, 4, 5], [2, 3]]  # a CPU's default
    assert [g.tolist() for g in length_groups(batch, False)] == [[0, 1, 2, 3, 4, 5]]
    results = {}
    for name, module in variants.items():
        model.zero_grad()
        loss = module(batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[name] = (loss.item(), module.logits(batch).detach(), grads)
    full_loss, full_logits, full_grads = results.pop("padded, whole")
    assert full_grads
    for name, (loss, logits, grads) in results.items():
        assert loss == pytest.approx(full_loss, abs=1e-5), name
        torch.testing.assert_close(logits, full_logits, atol=1e-5, rtol=1e-4)
        assert grads.keys() == full_grads.keys(), name
        for param, grad in full_grads.items():
            torch.testing.assert_close(grads[param], grad, atol=1e-5, rtol=1e-4)


def test_lr_schedule_first_update_moves_and_decays_to_zero():
    from gram_ray.train.loop import lr_factor

    assert lr_factor(0, 4, 20, "cosine") == pytest.approx(0.2)  # (0 + 1) / (4 + 1): never lr 0
    assert lr_factor(3, 4, 20, "cosine") == pytest.approx(0.8)
    assert lr_factor(4, 4, 20, "cosine") == pytest.approx(1.0)
    assert lr_factor(12, 4, 20, "cosine") == pytest.approx(0.5)  # half-way through the decay
    assert lr_factor(20, 4, 20, "cosine") == pytest.approx(0.0)
    assert lr_factor(12, 4, 20, "linear") == pytest.approx(0.5)
    assert lr_factor(19, 4, 20, "constant_with_warmup") == 1.0
    assert lr_factor(0, 0, 10, "cosine") == 1.0
