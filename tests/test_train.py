"""Ray Train jobs on a tiny model: two CPU workers, a few dozen real rows per stage."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from gram_ray.data import DataError, read_pairs
from gram_ray.encoding import longer_visible
from gram_ray.train.config import TrainConfig, load_train_config
from gram_ray.train.loop import epoch_batches

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROOT = Path(__file__).resolve().parents[1]


def slice_rows(name: str, n: int, dest: Path) -> Path:
    if not (DATA / name).is_file():
        pytest.skip("shared data not present")
    with gzip.open(DATA / name, "rt") as f:
        lines = [next(f) for _ in range(n)]
    out = dest / name.removesuffix(".gz")
    out.write_text("".join(lines))
    return out


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def config(tmp_path, model, data, stage="finetune", **overrides) -> TrainConfig:
    base = dict(
        stage=stage, model=str(model), data=[str(data)], output_dir=str(tmp_path / "out"), num_workers=2,
        batch_size=4, max_steps=8, lr=5e-3, warmup_ratio=0.0, scheduler="constant_with_warmup",
        max_prompt_tokens=32, max_response_tokens=24, lora={"r": 8, "alpha": 16, "dropout": 0.0},
        checkpoint_every=4, log_every=4, dtype="float32",
    )
    return TrainConfig(**{**base, **overrides})


def test_epoch_batches_shard_disjointly_and_evenly():
    shards = [epoch_batches(23, epoch=1, rank=r, world=2, batch_size=4, seed=0) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 3
    flat = [i for shard in shards for batch in shard for i in batch]
    assert len(flat) == len(set(flat)) == 22  # 23 // 2 * 2 rows, none twice
    assert epoch_batches(23, 1, 0, 2, 4, 0) == shards[0]  # deterministic: the resume position is exact
    assert epoch_batches(23, 2, 0, 2, 4, 0) != shards[0]  # reshuffled each epoch


def test_finetune_two_workers(ray_cluster, tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    from gram_ray.judge import Pair
    from gram_ray.scorer import GramScorer, ScorerConfig
    from gram_ray.train.run import train

    data = slice_rows("train_labeled.jsonl.gz", 32, tmp_path)
    result = train(config(tmp_path, tiny_model_dir, data, lora={"r": 8, "alpha": 16, "dropout": 0.0, "last_layers": 1}))
    metrics = result.metrics
    assert metrics["steps"] == 8 and metrics["workers"] == 2
    assert metrics["final_loss"] < metrics["first_loss"]
    final = Path(result.final_model)
    adapter = json.loads((final / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_model_dir)
    # LoRA on the last layer only: the adapter holds LoRA weights of layer 1 and nothing else.
    keys = load_file(str(final / "adapter_model.safetensors")).keys()
    assert keys and all("lora_" in k and ".layers.1." in k for k in keys)
    # The artifact loads in the scorer, and the adapter changes its verdicts.
    tuned = GramScorer.from_config(ScorerConfig(model=str(final), dtype="float32"))
    base = GramScorer.from_config(ScorerConfig(model=str(tiny_model_dir), dtype="float32"))
    pair = [Pair("q?", "an answer", "another answer")]
    assert tuned.score(pair)[0].p_ab != pytest.approx(base.score(pair)[0].p_ab, abs=1e-6)
    # LoRA changed only adapter weights: the base weights inside the tuned model are the originals.
    # (the scorer merges an adapter for inference, so read the unmerged PEFT model here)
    from gram_ray.models import load_causal_lm, resolve_model

    base_state = base.model.state_dict()
    for name, value in load_causal_lm(resolve_model(str(final)), is_trainable=True).get_base_model().state_dict().items():
        if "lora_" not in name:
            clean = name.replace(".base_layer", "")
            assert torch.equal(value, base_state[clean]), name
    assert (Path(result.output_dir) / "metrics.json").is_file()


def test_pretrain_then_finetune_from_the_stage1_adapter(ray_cluster, tmp_path, tiny_model_dir):
    from gram_ray.train.run import train

    unlabeled = slice_rows("train_unlabeled.jsonl.gz", 16, tmp_path)
    stage1 = train(config(tmp_path / "s1", tiny_model_dir, unlabeled, stage="pretrain", batch_size=2, lr=1e-2))
    assert stage1.metrics["final_loss"] < stage1.metrics["first_loss"]
    labeled = slice_rows("train_labeled.jsonl.gz", 16, tmp_path)
    stage2 = train(config(tmp_path / "s2", stage1.final_model, labeled, max_steps=2, checkpoint_every=2, log_every=1))
    adapter = json.loads((Path(stage2.final_model) / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_model_dir)  # the stage-1 adapter, trained further


def test_adapt_on_chosen_rejected_rows_and_bt_baseline(ray_cluster, tmp_path, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from gram_ray.train.run import train

    # Task adaptation mixes chosen/rejected rows with labeled pairs in one file (Arrow gives each row
    # the other schema's columns as nulls; they must not shadow the row's own fields).
    labeled = slice_rows("train_labeled.jsonl.gz", 24, tmp_path)
    adapt = tmp_path / "adapt_mix.jsonl"
    adapt.write_text(slice_rows("adapt_hh_harmless.jsonl.gz", 16, tmp_path).read_text() + "".join(labeled.read_text().splitlines(True)[:8]))
    # The workers take every CPU of the cluster (2 x 2 of 4): reading the data must not starve.
    result = train(config(tmp_path / "adapt", tiny_model_dir, adapt, max_steps=2, checkpoint_every=2, resources_per_worker={"CPU": 2}))
    assert result.metrics["steps"] == 2
    bt = train(config(tmp_path / "bt", tiny_model_dir, labeled, stage="bt"))
    assert bt.metrics["final_loss"] < bt.metrics["first_loss"]
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=1)
    model = PeftModel.from_pretrained(base, bt.final_model)
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 1)
    # Servable for comparison: the same scorer (hence the service and `gram-ray score`) loads it.
    from gram_ray.judge import Pair
    from gram_ray.scorer import GramScorer, ScorerConfig

    scorer = GramScorer.from_config(ScorerConfig(model=bt.final_model, dtype="float32"))
    assert scorer.scalar and scorer.info()["head"].startswith("scalar")
    (forward,) = scorer.score([Pair("q?", "a good answer", "bad")])
    (swapped,) = scorer.score([Pair("q?", "bad", "a good answer")])
    assert 0 < forward.p_a_better < 1 and forward.p_ab == forward.p_ba
    assert forward.p_a_better == pytest.approx(1 - swapped.p_a_better, abs=1e-6)


def test_resume_after_a_worker_failure(ray_cluster, tmp_path, tiny_model_dir):
    from gram_ray.train.run import train

    data = slice_rows("train_labeled.jsonl.gz", 16, tmp_path)
    cfg = config(tmp_path, tiny_model_dir, data, max_steps=6, checkpoint_every=2, log_every=1, fail_at_step=3, max_failures=1)
    result = train(cfg)
    assert result.metrics["steps"] == 6
    assert result.metrics["resumed_from"] == [2]  # continued from the step-2 checkpoint, not from scratch


def test_bad_rows_stop_the_job_with_their_line(tmp_path, tiny_model_dir):
    from gram_ray.train.run import prepare_data

    good = json.dumps({"prompt": "q", "response_a": "a", "response_b": "b", "label": "A"})
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join([good, good, json.dumps({"prompt": "q", "response_a": "a", "label": "A"}), good]) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:3: response_b: missing"):
        prepare_data(config(tmp_path, tiny_model_dir, data))
    files, skipped = prepare_data(config(tmp_path, tiny_model_dir, data, skip_bad_rows=True))
    assert skipped == 1 and len(Path(files[0]).read_text().splitlines()) == 3
    unlabeled = tmp_path / "unlabeled.jsonl"
    unlabeled.write_text(json.dumps({"prompt": "q", "response_a": "a", "response_b": "b"}) + "\n")
    with pytest.raises(ValueError, match="label: missing"):
        prepare_data(config(tmp_path, tiny_model_dir, unlabeled))


SELF_TRAIN_CONFIG = ROOT / "train_configs" / "self_train.yaml"
TRAIN_CONFIGS = sorted(p for p in (ROOT / "train_configs").glob("*.yaml") if p != SELF_TRAIN_CONFIG)


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_train_configs_validate(path):
    cfg = load_train_config(path)
    for item in cfg.data:
        assert Path(item).is_absolute()
        if DATA.is_dir():
            assert Path(item).is_file(), item
    assert Path(cfg.output_dir).is_absolute()
    assert {"model", "data", "output_dir", "num_workers", "use_gpu", "max_steps"} <= set(yaml.safe_load(path.read_text()))


def test_the_expected_configs_exist():
    assert {p.name for p in TRAIN_CONFIGS} >= {
        "pretrain.yaml", "finetune.yaml", "adapt.yaml", "bt_baseline.yaml", "prover.yaml", "reasoner.yaml"
    }


def test_self_train_config_validates_with_its_retrain_config():
    from gram_ray.train.self_train import load_self_train_config

    cfg = load_self_train_config(SELF_TRAIN_CONFIG)
    assert cfg.rounds >= 1 and cfg.votes >= 1 and 0.5 <= cfg.min_confidence <= 1
    for item in [*cfg.unlabeled, *cfg.labeled_rationales]:
        assert Path(item).is_absolute() and (not DATA.is_dir() or Path(item).is_file()), item
    # Local model paths become absolute even before the jobs that write them have run.
    assert cfg.reasoner == str(ROOT / "runs" / "reasoner" / "final") and Path(cfg.prover).is_absolute()
    retrain = load_train_config(cfg.retrain_config, [*cfg.retrain_overrides, "model=smollm2-135m"])
    assert retrain.stage == "reasoner"
    with pytest.raises(ValueError):
        load_self_train_config(SELF_TRAIN_CONFIG, ["min_confidence=0.3"])


def test_overrides():
    cfg = load_train_config(ROOT / "train_configs" / "finetune.yaml", ["lora.r=4", "max_steps=3", "use_gpu=true"])
    assert cfg.lora.r == 4 and cfg.max_steps == 3 and cfg.use_gpu is True
    assert load_train_config(ROOT / "train_configs" / "finetune.yaml", ["lora=null"]).lora is None
    with pytest.raises(ValueError, match="key=value"):
        load_train_config(ROOT / "train_configs" / "finetune.yaml", ["lora.r"])
    with pytest.raises(ValueError):
        load_train_config(ROOT / "train_configs" / "finetune.yaml", ["no_such_field=1"])


def test_relative_model_paths_resolve_against_the_project_root():
    # Ray Train workers run elsewhere, so a project-relative model directory must become absolute.
    cfg = load_train_config(ROOT / "train_configs" / "finetune.yaml", ["model=gram_ray/models/stage1-smollm2-135m"])
    assert cfg.model == str(ROOT / "gram_ray" / "models" / "stage1-smollm2-135m")
    assert load_train_config(ROOT / "train_configs" / "finetune.yaml", ["model=HuggingFaceTB/SmolLM2-135M"]).model == "HuggingFaceTB/SmolLM2-135M"
    assert load_train_config(ROOT / "train_configs" / "finetune.yaml", ["model=smollm2-135m"]).model == "smollm2-135m"


def test_export_a_checkpoint_of_a_stopped_run(ray_cluster, tmp_path, tiny_model_dir):
    from gram_ray.judge import Pair
    from gram_ray.scorer import GramScorer, ScorerConfig
    from gram_ray.train.loop import export_checkpoint, latest_checkpoint_dir
    from gram_ray.train.run import train

    data = slice_rows("train_labeled.jsonl.gz", 16, tmp_path)
    cfg = config(tmp_path, tiny_model_dir, data, max_steps=4, checkpoint_every=2, log_every=2)
    result = train(cfg)
    storage = Path(cfg.output_dir) / "ray" / "run"
    run_id = json.loads(next(storage.glob("checkpoint_*/position.json")).read_text())["run_id"]
    exported = export_checkpoint(cfg, latest_checkpoint_dir(storage, run_id), tmp_path / "exported")
    pair = [Pair("q?", "a", "b")]
    from_export = GramScorer.from_config(ScorerConfig(model=str(exported), dtype="float32")).score(pair)[0]
    from_final = GramScorer.from_config(ScorerConfig(model=result.final_model, dtype="float32")).score(pair)[0]
    assert from_export.p_ab == pytest.approx(from_final.p_ab, abs=1e-6)  # the last checkpoint is the final step


@pytest.mark.parametrize(
    "p, p_ab, p_ba, agree, expected",
    [
        (0.9, 1.0, 0.8, True, "A"),
        (0.1, 0.0, 0.2, True, "B"),
        (0.7, 1.0, 0.4, True, None),  # the orders disagree
        (0.7, 1.0, 0.4, False, None),  # 0.7 is under the confidence threshold
        (0.8, 1.0, 0.6, False, "A"),
        (0.5, 0.5, 0.5, False, None),  # no preference at all
    ],
)
def test_keep_prediction(p, p_ab, p_ba, agree, expected):
    from gram_ray.train.self_train import keep_prediction

    assert keep_prediction(p, p_ab, p_ba, min_confidence=0.75, require_agreement=agree) == expected


def test_prover_reasoner_and_a_resumable_self_training_round(ray_cluster, tmp_path, tiny_model_dir):
    from gram_ray.train.run import train
    from gram_ray.train.self_train import SelfTrainConfig, self_train

    rationales = slice_rows("train_rationales.jsonl.gz", 8, tmp_path)
    small = dict(max_steps=2, checkpoint_every=2, max_rationale_tokens=24)
    prover = train(config(tmp_path / "prover", tiny_model_dir, rationales, stage="prover", **small))
    reasoner = train(config(tmp_path / "reasoner", tiny_model_dir, rationales, stage="reasoner", **small))
    assert reasoner.metrics["stage"] == "reasoner" and reasoner.metrics["workers"] == 2
    retrain_yaml = tmp_path / "configs" / "reasoner.yaml"
    retrain_yaml.parent.mkdir()
    retrain_yaml.write_text(yaml.safe_dump(config(tmp_path, tiny_model_dir, rationales, stage="reasoner", **small).model_dump()))

    cfg = SelfTrainConfig(
        reasoner=reasoner.final_model, prover=prover.final_model,
        unlabeled=[str(slice_rows("train_unlabeled.jsonl.gz", 6, tmp_path))], labeled_rationales=[str(rationales)],
        output_dir=str(tmp_path / "self"), rounds=1, pairs_per_round=4, votes=1, min_confidence=0.5,
        require_agreement=False, sampling={"max_new_tokens": 6, "seed": 0}, prover_sampling={"max_new_tokens": 8, "seed": 0},
        max_prompt_tokens=32, max_response_tokens=24, num_actors=2, batch_size=2, retrain_config=str(retrain_yaml),
    )
    result = self_train(cfg)
    (summary,) = result["rounds"]
    assert summary["pairs"] == 4 and summary["samples"] == 4 * 2  # 1 vote in each order
    assert summary["kept"] == sum(1 for _ in open(tmp_path / "self" / "round_0" / "predictions.jsonl") if '"kept": true' in _)
    assert summary["rationales"] <= summary["kept"]
    assert Path(result["final_model"], "adapter_config.json").is_file()
    training = json.loads(Path(result["final_model"], "gram_training.json").read_text())
    assert training["config"]["model"] == reasoner.final_model  # round 0 continues from the given reasoner
    # Resume: with the round's files in place, nothing is judged, proved or trained again.
    folder = tmp_path / "self" / "round_0"
    stamps = {p.name: p.stat().st_mtime_ns for p in (folder / "predictions.jsonl", folder / "rationales.jsonl")}
    final_stamp = Path(result["final_model"], "gram_training.json").stat().st_mtime_ns
    (folder / "summary.json").unlink()
    again = self_train(cfg)
    assert again["rounds"][0]["kept"] == summary["kept"]
    assert {p: (folder / p).stat().st_mtime_ns for p in stamps} == stamps
    assert Path(result["final_model"], "gram_training.json").stat().st_mtime_ns == final_stamp


SMOOTHING_FLOOR = -(0.95 * math.log(0.95) + 0.05 * math.log(0.05))  # ε = 0.1: the best a model can do, 0.1985


def test_overfit_four_pairs_to_the_smoothing_floor(ray_cluster, tmp_path, tiny_model_dir):
    """The recipe can learn at all: on 4 pairs (both orders) the verdict loss falls to the
    label-smoothing floor H(0.95, 0.05). scripts/overfit_check.py runs the same on the real model."""
    from gram_ray.train.run import train

    data = slice_rows("train_labeled.jsonl.gz", 4, tmp_path)
    result = train(config(tmp_path, tiny_model_dir, data, num_workers=1, max_steps=60, lr=1e-2, lora=None,
                          log_every=10, checkpoint_every=60, scheduler="cosine"))
    assert result.metrics["first_loss"] > 0.5
    assert SMOOTHING_FLOOR - 1e-3 < result.metrics["final_loss"] < SMOOTHING_FLOOR + 0.03


def test_resume_from_a_committed_checkpoint_with_a_held_out_curve(ray_cluster, tmp_path, tiny_model_dir, smol_tokenizer):
    """A run continues from a checkpoint another run wrote (copied elsewhere, as a commit would
    carry it): weights, optimizer, schedule and data position; the held-out curve is appended."""
    import shutil

    from gram_ray.train.loop import newest_checkpoint
    from gram_ray.train.run import train

    data = slice_rows("train_labeled.jsonl.gz", 16, tmp_path)
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("".join(data.read_text().splitlines(keepends=True)[:4]))
    first = config(tmp_path / "a", tiny_model_dir, data, num_workers=1, max_steps=4, checkpoint_every=2, log_every=2,
                   eval_data=str(heldout), eval_every=2, eval_limit=3)
    result = train(first)
    curve = [json.loads(line) for line in (Path(first.output_dir) / "curve.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curve] == [2, 4] and all(c["n"] == 3 for c in curve)
    assert {"accuracy", "flip_rate", "ece", "length_baseline", "train_loss", "pairs_seen", "shorter_wins_accuracy"} <= curve[0].keys()
    rows = read_pairs(str(heldout), limit=3)[0]
    longer = longer_visible(smol_tokenizer, [r.pair.response_a for r in rows], [r.pair.response_b for r in rows],
                            first.max_response_tokens)
    assert curve[0]["shorter_wins_n"] == sum(side is not None and side != r.label for r, side in zip(rows, longer, strict=True))
    assert result.metrics["heldout"]["step"] == 4 and result.metrics["compute_dtype"] == "float32"

    committed = tmp_path / "committed"
    shutil.copytree(newest_checkpoint(Path(first.output_dir)), committed)
    resumed = train(first.model_copy(update={"output_dir": str(tmp_path / "b"), "max_steps": 6, "resume_from": str(committed)}))
    assert resumed.metrics["steps"] == 6 and resumed.metrics["resumed_from"] == [4]
    latest = train(first.model_copy(update={"max_steps": 6, "resume_from": "latest"}))
    assert latest.metrics["resumed_from"] == [4]

    with pytest.raises(Exception, match="batch_size=4"):  # the data position would mean other rows
        train(first.model_copy(update={"output_dir": str(tmp_path / "c"), "batch_size": 2, "resume_from": str(committed)}))


def test_continuing_an_adapter_with_other_lora_settings_is_an_error(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from gram_ray.train.loop import build_model

    adapter = tmp_path / "adapter"
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    cfg = TrainConfig(stage="finetune", model=str(adapter), data=["x.jsonl"], output_dir=str(tmp_path / "o"))
    with pytest.raises(ValueError, match=r"lora.r: 16 asked, but model .* is an adapter with r 4"):
        build_model(cfg, torch.device("cpu"))
    with pytest.raises(ValueError, match="lora: null"):
        build_model(cfg.model_copy(update={"lora": None}), torch.device("cpu"))
    ok = TrainConfig(**{**cfg.model_dump(), "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}})
    model, _, _ = build_model(ok, torch.device("cpu"))
    assert any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
