"""Start a serve config exactly as ``serve run`` does, from Python, and watch its judge replicas.

Benchmarks and the autoscaling test use this so that they measure the shipped YAML as users start it
(``serve run serve_configs/gram.yaml``), not an application assembled differently in code:

    path = with_numbers("serve_configs/gram.yaml", tmp_dir, judge={"autoscaling_config": {"max_replicas": 3}})
    serve_run(path, address=cluster.address)   # Serve's own `serve run` command, non-blocking, in this process
    judge_replicas()                           # {"RUNNING": 3}
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import yaml

from gram_ray.serve.scorer_deployment import JUDGE_DEPLOYMENT

APP = "gram"


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def with_numbers(
    config: str | Path,
    directory: str | Path,
    *,
    judge: dict[str, Any] | None = None,
    args: dict[str, Any] | None = None,
    http_port: int | None = None,
) -> Path:
    """A copy of a serve config with some numbers changed (the Judge deployment's options, the app's
    ``args``, the HTTP port), written to ``directory``: the same YAML a user would edit."""
    raw = yaml.safe_load(Path(config).read_text())
    (app,) = raw["applications"]
    app["args"] = _merge(app.get("args") or {}, args or {})
    for deployment in app["deployments"]:
        if deployment["name"] == JUDGE_DEPLOYMENT:
            deployment.update(_merge(deployment, judge or {}))
    if http_port is not None:
        raw.setdefault("http_options", {})["port"] = http_port
    out = Path(directory) / Path(config).name
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def serve_run(config: str | Path, address: str | None = None) -> None:
    """Serve's ``serve run <config> --non-blocking [--address]``, in this process (which then holds
    the Ray connection, so ``judge_replicas`` and ``serve.shutdown`` work from here)."""
    from ray.serve.scripts import run

    argv = [str(config), "--non-blocking", *(["--address", address] if address else [])]
    run.main(argv, standalone_mode=False)


def judge_replicas(app: str = APP) -> dict[str, int]:
    """Judge replicas by state (``RUNNING``, ``STARTING``, …); empty before the app is known."""
    from ray import serve

    application = serve.status().applications.get(app)
    if application is None or JUDGE_DEPLOYMENT not in application.deployments:
        return {}
    return {str(getattr(k, "value", k)): v for k, v in application.deployments[JUDGE_DEPLOYMENT].replica_states.items()}


def wait_for_replicas(running: int, timeout_s: float, app: str = APP, exact: bool = True) -> float:
    """Seconds until exactly (or at least) ``running`` judge replicas run and none is in another state."""
    start = time.monotonic()
    while True:
        states = judge_replicas(app)
        count = states.get("RUNNING", 0)
        settled = sum(states.values()) == count
        if settled and (count == running if exact else count >= running):
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"judge replicas {states} after {timeout_s:.0f} s, wanted {running} running")
        time.sleep(0.5)


def wait_until_serving(address: str, timeout_s: float, **client_kwargs: Any) -> float:
    """Seconds until ``Health`` answers SERVING at ``address`` (the app deploys, then the judge loads)."""
    import grpc

    from gram_ray.client import GramClient, RetryPolicy

    start = time.monotonic()
    with GramClient(address, timeout_s=10, retry=RetryPolicy(attempts=1), **client_kwargs) as client:
        while True:
            try:
                if client.health().get("status") == "SERVING":
                    return time.monotonic() - start
            except grpc.RpcError:
                pass
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"{address} not serving after {timeout_s:.0f} s")
            time.sleep(1)
