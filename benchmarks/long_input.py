"""Does one huge input stall the service? Latency of a short pair alone, of a pair with a
100,000-character response, and of a short pair sent while that long one is being judged.

    python benchmarks/long_input.py                            # the shipped serve_configs/gram.yaml
    python benchmarks/long_input.py --response-tokens 1024     # the same at a 1,024-token response budget

The shipped YAML is started by Serve's own ``serve run`` code (free ports), with the embedded
``default`` judge at the budgets it was trained at (its gram_training.json) unless
``--response-tokens`` overrides them. Every call is one ``Compare`` in both orders from ``GramClient``.
A response longer than the budget is cut to its first ``max_response_tokens`` tokens, so a long input
costs at most what a full-budget pair costs; the "short beside long" row is the head-of-line wait a
caller sees when its pair queues behind a long one on the same replica. Ends with
``RESULT short_s=… long_s=… short_beside_long_s=… long_over_short=…`` (medians).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import SHIPPED, stop  # noqa: E402

from gram_ray.client import GramClient  # noqa: E402
from gram_ray.serve.launch import start_on_free_ports  # noqa: E402

PROMPT = "Give me a tip for sleeping better."
SHORT = ("Keep a regular schedule: go to bed and get up at the same time every day.", "Sleep is good.")
LONG_RESPONSE = ("Here is a very detailed answer about sleep hygiene, covering light, noise and routine. " * 1200)[:100_000]


def timed(client: GramClient, a: str, b: str) -> float:
    start_s = time.perf_counter()
    (result,) = client.compare([(PROMPT, a, b)])
    assert 0.0 <= result["p_a_better"] <= 1.0
    return time.perf_counter() - start_s


def long_call(address: str) -> None:
    with GramClient(address, timeout_s=600) as other:
        timed(other, SHORT[0], LONG_RESPONSE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(SHIPPED))
    parser.add_argument("--response-tokens", type=int, default=None, help="override max_response_tokens")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="gram-long-")
    scorer = {} if args.response_tokens is None else {"max_response_tokens": args.response_tokens}
    # one judge replica: the head-of-line case is two callers on the same replica
    address = start_on_free_ports(args.config, tmp, args={"scorer": scorer},
                                  judge={"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}}).grpc
    try:
        with GramClient(address, timeout_s=600) as client:
            model = client.health().get("model")
            timed(client, *SHORT)  # warm-up: caches, first-call allocations
            short = [timed(client, *SHORT) for _ in range(args.repeats)]
            long = [timed(client, SHORT[0], LONG_RESPONSE) for _ in range(args.repeats)]
            beside: list[float] = []
            for _ in range(args.repeats):
                background = threading.Thread(target=long_call, args=(address,))
                background.start()
                time.sleep(0.2)  # the long pair is on the replica first
                beside.append(timed(client, *SHORT))
                background.join()
    finally:
        stop()

    med = {name: statistics.median(values) for name, values in (("short", short), ("long", long), ("beside", beside))}
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; config {args.config}; "
          f"model {model}; max_response_tokens {args.response_tokens or 'from the model'}")
    print(f"{'call':<40} {'median s':>9} {'all s':>24}")
    for name, label, values in (("short", "short pair alone", short), ("long", "100,000-char response alone", long),
                                ("beside", "short pair sent 0.2 s after a long one", beside)):
        print(f"{label:<40} {med[name]:>9.2f} {', '.join(f'{v:.2f}' for v in values):>24}")
    print(f"RESULT short_s={med['short']:.2f} long_s={med['long']:.2f} short_beside_long_s={med['beside']:.2f} "
          f"long_over_short={med['long'] / med['short']:.1f}")


if __name__ == "__main__":
    main()
