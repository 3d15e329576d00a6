"""Load on the reward service over gRPC (loopback only): batched vs unbatched vs the offline ceiling.

    python benchmarks/serve_load.py                               # embedded backbone, 64 requests per level
    python benchmarks/serve_load.py --requests 96 --concurrency 1 8 32 --max-response-tokens 64

Each request is a ``Compare`` of one pair (judged in both orders) from
../shared/data/train_labeled.jsonl.gz, so batching can only come from the server merging concurrent
requests. For each concurrency level a bounded number of requests is sent by that many client
threads, against (1) the service with ``@serve.batch`` (max_batch_pairs 32) and (2) the same service
with batching disabled (max_batch_pairs 1); (0) the ceiling is the offline scorer on the same pairs in
one process. All in one run, one scorer replica with all CPUs (or one GPU).
Ends with ``RESULT …`` (ratios at the highest concurrency).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from gram_ray.client import GramClient
from gram_ray.data import read_pairs
from gram_ray.scorer import GramScorer, ScorerConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train_labeled.jsonl.gz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_level(address: str, pairs: list, concurrency: int) -> dict:
    client = GramClient(address, timeout_s=600)
    latencies: list[float] = []

    def one(pair) -> None:
        start = time.perf_counter()
        client.compare_one(pair.prompt, pair.response_a, pair.response_b)
        latencies.append(time.perf_counter() - start)

    client.compare_one(pairs[0].prompt, pairs[0].response_a, pairs[0].response_b)  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, pairs))
    wall = time.perf_counter() - start
    client.close()
    latencies.sort()
    return {
        "rate": len(pairs) / wall,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-response-tokens", type=int, default=64)
    args = parser.parse_args()

    import ray
    from ray import serve

    from gram_ray.serve.app import build_application
    from gram_ray.serve.config import AppConfig

    rows, _ = read_pairs(DATA, limit=args.requests)
    pairs = [r.pair for r in rows]
    scorer_config = ScorerConfig(model=args.model, max_response_tokens=args.max_response_tokens, max_prompt_tokens=256)

    # (0) The ceiling: the offline batched scorer on the same pairs, in this process.
    offline = GramScorer.from_config(scorer_config)
    offline.score(pairs[:2])
    start = time.perf_counter()
    offline.score(pairs)
    ceiling = len(pairs) / (time.perf_counter() - start)
    device = offline.info()["device"]
    del offline

    cpus = os.cpu_count() or 1
    gpus = 1 if torch.cuda.is_available() else 0
    ray.init(num_cpus=cpus + 1, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    results: dict[str, dict[int, dict]] = {}
    for label, batch_size in (("batched", 32), ("unbatched", 1)):
        port = free_port()
        config = AppConfig(
            scorer=scorer_config, batching={"max_batch_pairs": batch_size, "batch_wait_timeout_s": 0.01}, grpc={"port": port}
        )
        app = build_application(
            config,
            scorer_options={"num_replicas": 1, "ray_actor_options": {"num_cpus": cpus, "num_gpus": gpus}},
            ingress_options={"ray_actor_options": {"num_cpus": 0}},
        )
        serve.run(app, name="load", route_prefix="/")
        results[label] = {c: run_level(f"127.0.0.1:{port}", pairs, c) for c in args.concurrency}
        serve.delete("load")
    serve.shutdown()
    ray.shutdown()

    top = max(args.concurrency)
    print(f"machine: {platform.machine()}, {cpus} CPUs, device {device}, model {args.model}, "
          f"responses cut to {args.max_response_tokens} tokens, {len(pairs)} requests per level")
    print(f"offline ceiling: {ceiling:.2f} comparisons/s")
    print(f"{'service':<10}{'concurrency':>12}{'comparisons/s':>15}{'p50 ms':>10}{'p99 ms':>10}{'of ceiling':>12}")
    for label, levels in results.items():
        for c, r in levels.items():
            print(f"{label:<10}{c:>12}{r['rate']:>15.2f}{1000 * r['p50']:>10.0f}{1000 * r['p99']:>10.0f}{r['rate'] / ceiling:>12.0%}")
    of_ceiling = results["batched"][top]["rate"] / ceiling
    vs_unbatched = results["batched"][top]["rate"] / results["unbatched"][top]["rate"]
    print(f"at concurrency {top}: batched = {of_ceiling:.0%} of the ceiling, {vs_unbatched:.2f}x the unbatched service")
    print(
        f"RESULT of_ceiling={of_ceiling:.3f} vs_unbatched={vs_unbatched:.2f} ceiling={ceiling:.2f} "
        f"batched_rate={results['batched'][top]['rate']:.2f} unbatched_rate={results['unbatched'][top]['rate']:.2f} "
        f"concurrency={top} device={device}"
    )


if __name__ == "__main__":
    main()
