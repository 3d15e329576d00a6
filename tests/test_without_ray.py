"""Training and evaluation without Ray (``launcher=local``, ``--num-actors 0``): the same loop and
scorer in one process, for a machine whose image has torch, transformers and peft but not Ray.

Each run happens in a subprocess where ``import ray`` fails, so a stray Ray import is a failure;
the results are compared with the Ray launcher's on the same config."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def without_ray(code: str, tmp_path: Path) -> dict:
    """Run ``code`` (which sets ``result``) in a fresh interpreter that cannot import Ray."""
    script = "import json, sys\nsys.modules['ray'] = None  # `import ray` raises ImportError\n" + textwrap.dedent(code)
    script += "\nprint('RESULT_JSON=' + json.dumps(result))\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT_JSON="))
    return json.loads(line.removeprefix("RESULT_JSON="))


@pytest.fixture()
def rows(tmp_path) -> Path:
    if not (DATA / "train_labeled.jsonl.gz").is_file():
        pytest.skip("shared data not present")
    with gzip.open(DATA / "train_labeled.jsonl.gz", "rt") as f:
        lines = [next(f) for _ in range(16)]
    out = tmp_path / "labeled.jsonl"
    out.write_text("".join(lines))
    return out


def train_config(tmp_path: Path, model: Path, data: Path, **overrides) -> dict:
    return {
        "stage": "finetune", "model": str(model), "data": [str(data)], "output_dir": str(tmp_path / "local"),
        "num_workers": 1, "batch_size": 2, "max_steps": 4, "lr": 5e-3, "warmup_ratio": 0.0,
        "scheduler": "constant_with_warmup", "max_prompt_tokens": 32, "max_response_tokens": 24,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "checkpoint_every": 2, "keep_checkpoints": 1, "log_every": 1,
        "dtype": "float32", "eval_data": str(data), "eval_every": 2, "eval_limit": 3, **overrides,
    }


def test_local_launcher_trains_without_ray_and_a_ray_run_resumes_it(tmp_path, tiny_model_dir, rows):
    import ray

    from gram_ray.train.config import TrainConfig
    from gram_ray.train.loop import newest_checkpoint
    from gram_ray.train.run import train

    local = train_config(tmp_path, tiny_model_dir, rows, launcher="local")
    result = without_ray(f"""
        from gram_ray.train.config import TrainConfig
        from gram_ray.train.run import train
        result = train(TrainConfig(**{local!r})).model_dump()
    """, tmp_path)
    out = Path(local["output_dir"])
    assert result["metrics"]["steps"] == 4 and result["metrics"]["device"] == "cpu"
    assert (Path(result["final_model"]) / "adapter_model.safetensors").is_file()
    assert [json.loads(x)["step"] for x in (out / "curve.jsonl").read_text().splitlines()] == [2, 4]
    # keep_checkpoints=1: only the last survives, whole, where a Ray run's checkpoints live
    checkpoints = sorted((out / "ray" / "run").glob("checkpoint_*"))
    assert [c.name for c in checkpoints] == ["checkpoint_local_0000004"] and newest_checkpoint(out) == checkpoints[0]

    # The same loop under Ray Train from the same config: the same data order, so the same losses.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray_cfg = TrainConfig(**{**local, "launcher": "ray", "output_dir": str(tmp_path / "ray")})
        on_ray = train(ray_cfg)
        assert on_ray.metrics["first_loss"] == pytest.approx(result["metrics"]["first_loss"], abs=1e-4)
        assert on_ray.metrics["final_loss"] == pytest.approx(result["metrics"]["final_loss"], abs=1e-4)
        # … and a Ray run continues the local run's checkpoint (weights, optimizer, data position).
        resumed = train(ray_cfg.model_copy(update={"output_dir": str(tmp_path / "resumed"), "max_steps": 6,
                                                   "resume_from": str(checkpoints[0])}))
        assert resumed.metrics["resumed_from"] == [4] and resumed.metrics["steps"] == 6
    finally:
        ray.shutdown()


def test_local_launcher_refuses_what_it_cannot_do(tmp_path, tiny_model_dir, rows):
    from gram_ray.train.config import TrainConfig
    from gram_ray.train.run import train

    with pytest.raises(ValueError, match="num_workers: 2 with launcher=local"):
        train(TrainConfig(**train_config(tmp_path, tiny_model_dir, rows, launcher="local", num_workers=2)))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="use_gpu: true but torch sees no CUDA"):
            train(TrainConfig(**train_config(tmp_path, tiny_model_dir, rows, launcher="local", use_gpu=True)))


def test_eval_in_process_without_ray_matches_the_offline_scorer(tmp_path, tiny_model_dir, rows):
    from gram_ray.data import read_pairs
    from gram_ray.judge import render_question
    from gram_ray.scorer import GramScorer, ScorerConfig

    out = tmp_path / "eval"
    metrics = without_ray(f"""
        from gram_ray.eval.run import EvalConfig, evaluate
        from gram_ray.scorer import ScorerConfig
        scorer = ScorerConfig(model={str(tiny_model_dir)!r}, dtype="float32", max_prompt_tokens=32, max_response_tokens=24)
        result = evaluate(EvalConfig(data={str(rows)!r}, out={str(out)!r}, scorer=scorer, num_actors=0, batch_size=3, limit=5))
    """, tmp_path)
    assert metrics["comparisons"] == 5
    predictions = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    scorer = GramScorer.from_config(ScorerConfig(model=str(tiny_model_dir), dtype="float32", max_prompt_tokens=32,
                                                 max_response_tokens=24))
    parsed, _ = read_pairs(rows, limit=5)
    from gram_ray.judge import Pair

    expected = scorer.score([Pair(render_question(r.pair.prompt), r.pair.response_a, r.pair.response_b) for r in parsed])
    assert [p["p_ab"] for p in predictions] == pytest.approx([e.p_ab for e in expected], abs=1e-5)
    assert [p["p_ba"] for p in predictions] == pytest.approx([e.p_ba for e in expected], abs=1e-5)


def test_the_cli_works_without_grpc_except_its_client_commands(tmp_path):
    """A training or evaluation box need not have grpcio (or the version the stubs want)."""
    code = "import sys; sys.modules['grpc'] = None; from gram_ray.cli import main; sys.exit(main(sys.argv[1:]))"
    listed = subprocess.run([sys.executable, "-c", code, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "train" in listed.stdout and "unavailable" in listed.stdout
    client = subprocess.run([sys.executable, "-c", code, "client", "compare", "--prompt", "q"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert client.returncode != 0 and "gram-ray client: unavailable here" in client.stderr
