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


def test_serve_run_default_config_and_client_cli():
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
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
