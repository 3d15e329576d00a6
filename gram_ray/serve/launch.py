"""Start a serve config exactly as ``serve run`` does, from Python, and watch its judge replicas.

Tests and benchmarks use this so that they measure the shipped YAML as users start it
(``serve run serve_configs/gram.yaml``), not an application assembled differently in code:

    started = start_on_free_ports("serve_configs/gram.yaml", tmp_dir,
                                  judge={"autoscaling_config": {"max_replicas": 3}}, address=cluster.address)
    GramClient(started.grpc)                   # Health already answers SERVING
    judge_replicas()                           # {"RUNNING": 1}, then more under load

``with_numbers`` + ``serve_run`` + ``wait_until_serving`` are the same steps one at a time.
"""

from __future__ import annotations

import copy
import socket
import time
from dataclasses import dataclass
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


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Started:
    grpc: str  # "127.0.0.1:<port>", for GramClient
    http: str  # "http://127.0.0.1:<port>", the HTTP routes
    config: Path  # the YAML that was started


def start_on_free_ports(
    config: str | Path,
    directory: str | Path,
    *,
    judge: dict[str, Any] | None = None,
    args: dict[str, Any] | None = None,
    address: str | None = None,
    timeout_s: float = 600,
    **client_kwargs: Any,
) -> Started:
    """``config`` with its gRPC and HTTP ports moved to free ones (and the other numbers given changed,
    as :func:`with_numbers`), started by ``serve run``; returns once ``Health`` answers SERVING.
    ``client_kwargs`` (``token``, ``tls_ca_file``) are what a client needs to ask."""
    grpc_port, http_port = free_port(), free_port()
    path = with_numbers(config, directory, judge=judge, args=_merge(args or {}, {"grpc": {"port": grpc_port}}),
                        http_port=http_port)
    serve_run(path, address=address)
    wait_until_serving(f"127.0.0.1:{grpc_port}", timeout_s, **client_kwargs)
    return Started(grpc=f"127.0.0.1:{grpc_port}", http=f"http://127.0.0.1:{http_port}", config=path)
