"""Load on the reward service as users start it (`serve run serve_configs/gram.yaml`), over gRPC.

    python benchmarks/serve_load.py                          # the shipped gram.yaml at concurrency 1 and 16
    python benchmarks/serve_load.py --requests 32 --concurrency 1 16 --nodes 2   # + autoscaling across 2 nodes
    python benchmarks/serve_load.py --config serve_configs/gram.yaml my.yaml      # other configs beside it

Also: a 16-response `Rank` per strategy (knockout, tournament: n-1 comparisons; round_robin: 120) and a
GRPO-style `Reward` group of 8 (anchor: 7 comparisons, circular: 8), wall time and comparisons.

Each request is a ``Compare`` of one real pair (../shared/data/train_labeled.jsonl.gz, judged in both
orders), so batching can only come from the server merging concurrent requests.

(0) Offline ceiling: the config's own scorer settings in this process, all CPUs, the same pairs in
    one batched call.
(1) Each config started by Serve's own ``serve run`` code (non-blocking, in this process so that
    ``serve.status()`` can watch the replicas). Per concurrency level: load until autoscaling has
    settled (the seconds it took are reported), then the measured requests: pairs/s, p50/p99 latency,
    judge replicas running and not running (pending) at the end.
(2) ``--nodes N``: a local multi-node Ray cluster (``ray.cluster_utils.Cluster``: a 0-CPU head and N
    nodes sharing the CPUs), the same YAML with ``max_replicas`` N and ``num_cpus`` per node: the rate
    with the judge held at 1 replica, then scaling 1 -> N under load (seconds), the rate with N, and
    the seconds back to ``min_replicas`` once the load stops.
Ends with ``RESULT …`` (served_vs_offline at the highest concurrency).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from gram_ray.client import GramClient
from gram_ray.data import read_pairs
from gram_ray.scorer import GramScorer, ScorerConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "train_labeled.jsonl.gz"
SHIPPED = ROOT / "serve_configs" / "gram.yaml"


def app_and_judge(path: Path) -> tuple[dict, dict]:
    (app,) = yaml.safe_load(path.read_text())["applications"]
    return app, next(d for d in app["deployments"] if d["name"] == "Judge")


def expected_replicas(judge: dict, concurrency: int) -> int:
    """Replicas Serve's default policy settles on with ``concurrency`` callers (ongoing / target)."""
    scaling = judge.get("autoscaling_config")
    if not scaling:
        return int(judge.get("num_replicas", 1))
    wanted = math.ceil(concurrency / scaling.get("target_ongoing_requests", 2))
    return max(scaling.get("min_replicas", 1), min(scaling["max_replicas"], wanted))


def measure(address: str, pairs: list, concurrency: int) -> dict:
    latencies: list[float] = []
    clients = [GramClient(address, timeout_s=900) for _ in range(concurrency)]
    local = threading.local()

    def one(item) -> None:
        i, pair = item
        client = getattr(local, "client", None) or clients[i % concurrency]
        local.client = client
        start = time.perf_counter()
        client.compare_one(pair.prompt, pair.response_a, pair.response_b)
        latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, enumerate(pairs)))
    wall = time.perf_counter() - start
    for c in clients:
        c.close()
    latencies.sort()
    return {"rate": len(pairs) / wall, "p50": statistics.median(latencies),
            "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


class Background:
    """Callers that keep the service busy (cycling the pairs) while autoscaling settles."""

    def __init__(self, address: str, pairs: list, concurrency: int):
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(address, pairs, i), daemon=True) for i in range(concurrency)]
        for t in self.threads:
            t.start()

    def _run(self, address: str, pairs: list, i: int) -> None:
        with GramClient(address, timeout_s=900) as client:
            while not self.stop.is_set():
                pair = pairs[i % len(pairs)]
                client.compare_one(pair.prompt, pair.response_a, pair.response_b)
                i += len(self.threads)

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def run_levels(address: str, pairs: list, judge: dict, levels: list[int]) -> dict[int, dict]:
    from gram_ray.serve.launch import judge_replicas, wait_for_replicas

    out = {}
    for concurrency in levels:
        want = expected_replicas(judge, concurrency)
        load = Background(address, pairs, concurrency)
        try:
            settle_s = wait_for_replicas(want, timeout_s=600, exact=False)
        finally:
            load.join()
        result = measure(address, pairs, concurrency)
        states = judge_replicas()
        result.update(settle_s=settle_s, running=states.get("RUNNING", 0), pending=sum(states.values()) - states.get("RUNNING", 0))
        out[concurrency] = result
        print(f"  concurrency {concurrency}: {result['rate']:.3f} pairs/s, p50 {result['p50']:.1f} s, "
              f"replicas {states}", flush=True)
    return out


def rank_and_reward(address: str, pairs: list) -> list[tuple[str, float, int]]:
    """A 16-response Rank per strategy and a GRPO-style Reward group of 8: wall time, comparisons."""
    from gram_ray.client import rank_request, reward_request

    question = pairs[0].prompt
    responses = [r for p in pairs[:8] for r in (p.response_a, p.response_b)][:16]
    out = []
    with GramClient(address, timeout_s=3600) as client:
        for strategy in ("knockout", "tournament", "round_robin"):
            t0 = time.perf_counter()
            result = client._call(client.stub.Rank, rank_request(question, responses, strategy))
            out.append((f"Rank 16 {strategy}", time.perf_counter() - t0, result.comparisons))
        for scoring in ("anchor", "circular"):
            t0 = time.perf_counter()
            result = client._call(client.stub.Reward, reward_request([question] * 8, responses[:8], groups=["g"] * 8,
                                                                     group_scoring=scoring))
            out.append((f"Reward group of 8 {scoring}", time.perf_counter() - t0, result.comparisons))
    for name, seconds, comparisons in out:
        print(f"  {name}: {seconds:.1f} s, {comparisons} comparisons", flush=True)
    return out


def stop() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def served(config: Path, pairs: list, levels: list[int], tmp: Path, costs: bool) -> tuple[dict[int, dict], list]:
    """``config`` on a fresh local Ray instance, as ``serve run`` starts it (ports moved to free ones)."""
    from gram_ray.serve.launch import start_on_free_ports

    started = start_on_free_ports(config, tmp)
    address = started.grpc
    try:
        levels_out = run_levels(address, pairs, app_and_judge(started.config)[1], levels)
        return levels_out, rank_and_reward(address, pairs) if costs else []
    finally:
        stop()


def multinode(config: Path, pairs: list, nodes: int, concurrency: int, tmp: Path) -> dict:
    """The same YAML on a local N-node cluster: rate at 1 replica, scale 1 -> N, rate at N, back to min."""
    import ray
    from ray.cluster_utils import Cluster

    from gram_ray.serve.launch import start_on_free_ports, wait_for_replicas

    cpus = max(1, (os.cpu_count() or 1) // nodes)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(nodes):
        cluster.add_node(num_cpus=cpus)
    cluster.wait_for_nodes()
    out: dict = {"nodes": nodes, "cpus_per_node": cpus}
    try:
        for replicas in (1, nodes):
            address = start_on_free_ports(
                config, tmp, address=cluster.address,
                judge={"ray_actor_options": {"num_cpus": cpus},
                       "autoscaling_config": {"min_replicas": 1, "max_replicas": replicas,
                                              "target_ongoing_requests": max(1, concurrency // nodes),
                                              "upscale_delay_s": 5, "downscale_delay_s": 20}},
            ).grpc
            load = Background(address, pairs, concurrency)
            try:
                out[f"scale_up_s_{replicas}"] = wait_for_replicas(replicas, timeout_s=600)
            finally:
                load.join()
            out[f"rate_{replicas}"] = measure(address, pairs, concurrency)["rate"]
            if replicas > 1:
                out["scale_down_s"] = wait_for_replicas(1, timeout_s=600)
            from ray import serve

            serve.shutdown()
            print(f"  {nodes} nodes, max_replicas {replicas}: {out[f'rate_{replicas}']:.3f} pairs/s", flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, nargs="+", default=[SHIPPED])
    parser.add_argument("--requests", type=int, default=32, help="measured requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--nodes", type=int, default=0, help="also show autoscaling on a local cluster of N nodes")
    parser.add_argument("--no-rank", action="store_true", help="skip the 16-response Rank / group-of-8 Reward costs")
    args = parser.parse_args()

    rows, _ = read_pairs(DATA, limit=args.requests)
    pairs = [r.pair for r in rows]
    scorer_args = app_and_judge(args.config[0])[0]["args"]["scorer"]

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    offline = GramScorer.from_config(ScorerConfig(**scorer_args))
    offline.score(pairs[:2])
    t0 = time.perf_counter()
    offline.score(pairs)
    ceiling = len(pairs) / (time.perf_counter() - t0)
    info = offline.info()
    del offline
    print(f"offline ceiling: {ceiling:.3f} pairs/s ({info['device']}, {info['dtype']}, budgets "
          f"{info['max_prompt_tokens']}/{info['max_response_tokens']})", flush=True)

    results: dict[str, dict[int, dict]] = {}
    costs: list = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.config:
            print(f"serve run {config.relative_to(ROOT) if config.is_relative_to(ROOT) else config}", flush=True)
            results[config.name], found = served(config, pairs, sorted(args.concurrency), Path(tmp),
                                                 costs=not args.no_rank and config == args.config[0])
            costs = costs or found
        scaling = multinode(args.config[0], pairs, args.nodes, max(args.concurrency), Path(tmp)) if args.nodes > 1 else None

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, model {scorer_args.get('model')}, "
          f"{len(pairs)} single-pair Compare requests per level, both orders")
    print(f"{'config':<16}{'concurrency':>12}{'pairs/s':>10}{'of offline':>12}{'p50 s':>8}{'p99 s':>8}{'replicas':>10}"
          f"{'pending':>9}{'settle s':>10}")
    print(f"{'offline':<16}{'':>12}{ceiling:>10.3f}{1:>12.0%}")
    for name, levels in results.items():
        for c, r in levels.items():
            print(f"{name:<16}{c:>12}{r['rate']:>10.3f}{r['rate'] / ceiling:>12.0%}{r['p50']:>8.1f}{r['p99']:>8.1f}"
                  f"{r['running']:>10}{r['pending']:>9}{r['settle_s']:>10.1f}")
    if costs:
        print(f"\n{'request (' + args.config[0].name + ', concurrency 1)':<36}{'seconds':>9}{'comparisons':>13}")
        for name, seconds, comparisons in costs:
            print(f"{name:<36}{seconds:>9.1f}{comparisons:>13}")
    top = results[args.config[0].name][max(args.concurrency)]
    fields = {"served_vs_offline": f"{top['rate'] / ceiling:.3f}", "offline_rate": f"{ceiling:.3f}",
              "served_rate": f"{top['rate']:.3f}", "p50_s": f"{top['p50']:.2f}", "p99_s": f"{top['p99']:.2f}",
              "replicas": top["running"], "pending": top["pending"], "concurrency": max(args.concurrency)}
    if scaling:
        n = scaling["nodes"]
        print(f"\nautoscaling on a local {n}-node cluster ({scaling['cpus_per_node']} CPU each), concurrency "
              f"{max(args.concurrency)}: 1 replica {scaling['rate_1']:.3f} pairs/s; scaled 1 -> {n} in "
              f"{scaling[f'scale_up_s_{n}']:.0f} s, {scaling[f'rate_{n}']:.3f} pairs/s "
              f"({scaling[f'rate_{n}'] / scaling['rate_1']:.2f}x); back to 1 in {scaling['scale_down_s']:.0f} s after the load stopped")
        fields.update(nodes=n, scale_up_s=f"{scaling[f'scale_up_s_{n}']:.0f}", scale_down_s=f"{scaling['scale_down_s']:.0f}",
                      rate_1=f"{scaling['rate_1']:.3f}", rate_n=f"{scaling[f'rate_{n}']:.3f}",
                      scaling_speedup=f"{scaling[f'rate_{n}'] / scaling['rate_1']:.2f}")
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    main()
