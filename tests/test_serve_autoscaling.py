"""Autoscaling on a real multi-node Ray cluster (ray.cluster_utils.Cluster: three 1-CPU nodes and a
0-CPU head on this machine), started from the shipped serve_configs/gram.yaml with other numbers,
the way `serve run` starts it: the judge scales 1 -> 3 replicas across the nodes under load, the
replicas share the load, and it comes back to min_replicas when the load stops."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from gram_ray.client import GramClient

ROOT = Path(__file__).resolve().parents[1]
NODES = 3


def sample_replicas(handle, count: int, timeout_s: float) -> dict[int, dict]:
    """Each replica's stats by pid: a handle routes each call to one replica (and learns of new ones
    within seconds), so ask until ``count`` distinct replicas answered."""
    replicas, deadline = {}, time.monotonic() + timeout_s
    while len(replicas) < count and time.monotonic() < deadline:
        stats = handle.stats.remote().result()
        replicas[stats["pid"]] = stats
        time.sleep(0.2)
    return replicas


@pytest.fixture()
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(NODES):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    from ray import serve

    serve.shutdown()
    ray.shutdown()
    cluster.shutdown()


def test_judge_scales_across_nodes_under_load_and_back(cluster, tiny_model_dir, tmp_path):
    from ray import serve

    from gram_ray.serve.launch import judge_replicas, start_on_free_ports, wait_for_replicas

    started = start_on_free_ports(
        ROOT / "serve_configs" / "gram.yaml", tmp_path, address=cluster.address, timeout_s=180,
        args={"scorer": {"model": str(tiny_model_dir), "dtype": "float32"}},
        judge={"autoscaling_config": {"min_replicas": 1, "max_replicas": NODES, "target_ongoing_requests": 2,
                                      "upscale_delay_s": 1, "downscale_delay_s": 3}},
    )
    client = GramClient(started.grpc, timeout_s=60)
    assert judge_replicas() == {"RUNNING": 1}

    stop = threading.Event()

    def load(i: int) -> None:
        with GramClient(started.grpc, timeout_s=60) as c:
            while not stop.is_set():
                c.compare_one(f"question {i}", "a fairly long answer " * 20, "no")

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(16)]
    for t in threads:
        t.start()
    try:
        scale_up_s = wait_for_replicas(NODES, timeout_s=150)
        handle = serve.get_deployment_handle("Judge", app_name="gram")
        replicas = sample_replicas(handle, NODES, timeout_s=60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert len(replicas) == NODES, f"only {len(replicas)} replicas answered"
    assert len({s["node_id"] for s in replicas.values()}) == NODES, "replicas should sit on different nodes"
    assert all(s["torch_threads"] == 1 for s in replicas.values())  # threads = the replica's num_cpus
    assert all(s["pairs"] > 0 for s in replicas.values()), {pid: s["pairs"] for pid, s in replicas.items()}
    scale_down_s = wait_for_replicas(1, timeout_s=120)
    print(f"scaled 1 -> {NODES} in {scale_up_s:.1f} s under load, back to 1 in {scale_down_s:.1f} s")
    assert client.compare_one("q", "a", "b")["p_a_better"] >= 0.0
    client.close()
