"""`serve run serve_configs/gram.yaml` as a user runs it, then the client CLI against it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]


def _openrlhf_request(tokenizer):
    """OpenRLHF's remote reward client's request (openrlhf/utils/remote_rm_utils.py), a ChatML prompt."""
    import urllib.request

    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], tokenize=False, add_generation_prompt=True)
    body = {"query": [prompt + "4<|im_end|>", prompt + "5<|im_end|>"], "prompts": [prompt] * 2, "labels": ["4", "4"]}
    request = urllib.request.Request("http://127.0.0.1:8000/get_reward", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        out = json.loads(response.read())
    assert len(out["rewards"]) == 2 and out["extra_logs"]["gram_unparsed_prompts"] == [0.0, 0.0]


def _trl_grpo_steps(tokenizer, tmp_path):
    """TRL's GRPOTrainer (a tiny random policy) trains 2 steps with the served judge as its reward."""
    import math

    from conftest import tiny_llama
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from gram_ray.client import grpo_reward_function

    rows = [{"prompt": [{"role": "user", "content": q}]} for q in ("What is 2+2?", "Name a colour.")]
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=8, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", seed=0)
    trainer = GRPOTrainer(model=tiny_llama(tokenizer, seed=1), reward_funcs=[grpo_reward_function("127.0.0.1:50051", timeout_s=120)],
                          args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.train()
    logged = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    assert len(logged) == 2 and all(math.isfinite(r) for r in logged)


def test_serve_run_default_config_and_client_cli(smol_tokenizer, tmp_path):
    serve_bin = Path(sys.executable).parent / "serve"
    proc = subprocess.Popen(
        [str(serve_bin), "run", "serve_configs/gram.yaml"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    try:
        cli = [sys.executable, "-m", "gram_ray.cli", "client"]
        deadline = time.time() + 240
        while True:
            health = subprocess.run(cli + ["health", "--timeout", "5"], capture_output=True, text=True)
            if health.returncode == 0:
                break
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "service did not come up: " + health.stderr
            time.sleep(3)
        info = json.loads(health.stdout)
        assert info["status"] == "SERVING" and info["model"] == "default"
        out = subprocess.run(cli + ["compare", "--prompt", "2+2?", "--a", "4", "--b", "5"], capture_output=True, text=True, check=True)
        assert 0.0 < json.loads(out.stdout)["p_a_better"] < 1.0
        out = subprocess.run(cli + ["rank", "--prompt", "2+2?", "--responses", "4", "5", "four", "--strategy", "tournament"], capture_output=True, text=True, check=True)
        assert json.loads(out.stdout)["comparisons"] == 2
        out = subprocess.run(cli + ["reward", "--prompt", "2+2?", "--response", "4", "--reference", "5"], capture_output=True, text=True, check=True)
        assert isinstance(json.loads(out.stdout)["reward"], float)
        bad = subprocess.run(cli + ["rank", "--prompt", "q", "--responses", "only"], capture_output=True, text=True)
        assert bad.returncode == 1 and "INVALID_ARGUMENT: responses" in bad.stderr
        _openrlhf_request(smol_tokenizer)
        _trl_grpo_steps(smol_tokenizer, tmp_path)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
