"""Soak: many Compare calls at high concurrency against the shipped config, as `serve run` starts it.

    python benchmarks/soak.py                                  # 10,000 requests, concurrency 64
    python benchmarks/soak.py --requests 2000 --concurrency 32 --tokens 32
    python benchmarks/soak.py --tiny                           # the serving stack with a 2-layer random judge

``--tiny`` swaps the model for a 2-layer randomly initialised Llama with the real tokenizer (built in a
temporary directory): the soak checks the service (queues, batching, retries, memory), and on a
2-core CPU the real judge scores ~2 pairs/s even at 32-token budgets, so 10,000 calls would take
over an hour there (minutes on a GPU).

serve_configs/gram.yaml with small token budgets (``--tokens`` for the question and each response, so
that it finishes in minutes on a CPU) and free ports, started by Serve's own ``serve run`` code. Each
request is one short real pair (../shared/data/train_labeled.jsonl.gz, cycled) sent by ``GramClient``
(default retries, per-call deadline 300 s). Counted: failed calls (lost), answers with the wrong number
of results or a p outside [0, 1], p50/p99 latency, and each judge replica's resident memory at the start
and the end (growth = a leak). Ends with ``RESULT lost=… wrong=… …``.
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

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import ROOT, SHIPPED  # noqa: E402

from gram_ray.client import GramClient  # noqa: E402
from gram_ray.data import read_pairs  # noqa: E402
from gram_ray.serve.launch import judge_replicas, start_on_free_ports  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "train_labeled.jsonl.gz"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def judge_memory() -> dict[int, float]:
    """Resident MB of every judge replica process on this machine."""
    import subprocess

    out = subprocess.run(["pgrep", "-f", "ServeReplica:gram:Judge"], capture_output=True, text=True).stdout.split()
    return {int(pid): rss_mb(int(pid)) for pid in out if Path(f"/proc/{pid}").exists()}


def tiny_judge(path: Path) -> str:
    """A 2-layer randomly initialised Llama with the embedded model's tokenizer, saved to ``path``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from gram_ray.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("smollm2-135m"))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                         pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=SHIPPED)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=32, help="question and response budget (tokens)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer random judge instead of the config's model")
    args = parser.parse_args()

    rows, _ = read_pairs(DATA, limit=500)
    pairs = [r.pair for r in rows]
    tmp = tempfile.mkdtemp(prefix="gram-soak-")
    scorer = {"max_prompt_tokens": args.tokens, "max_response_tokens": args.tokens}
    if args.tiny:
        scorer.update(model=tiny_judge(Path(tmp) / "tiny"), dtype="float32")
    address = start_on_free_ports(args.config, tmp, args={"scorer": scorer}).grpc
    with GramClient(address) as c:  # load the model's caches before the first measurement
        c.compare_one(pairs[0].prompt, pairs[0].response_a, pairs[0].response_b)
    memory_start = judge_memory()

    lock = threading.Lock()
    next_index, latencies, lost, wrong, codes = 0, [], 0, 0, {}

    def worker() -> None:
        nonlocal next_index, lost, wrong
        with GramClient(address, timeout_s=300) as client:
            while True:
                with lock:
                    i, next_index = next_index, next_index + 1
                if i >= args.requests:
                    return
                pair = pairs[i % len(pairs)]
                start = time.perf_counter()
                try:
                    results = client.compare([(pair.prompt, pair.response_a, pair.response_b)])
                except grpc.RpcError as exc:
                    with lock:
                        lost += 1
                        codes[exc.code().name] = codes.get(exc.code().name, 0) + 1
                    continue
                elapsed = time.perf_counter() - start
                ok = len(results) == 1 and 0.0 <= results[0]["p_a_better"] <= 1.0
                with lock:
                    latencies.append(elapsed)
                    wrong += not ok

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(15)
        with lock:
            done = next_index
        print(f"  {min(done, args.requests)}/{args.requests} sent, {len(latencies)} answered, {lost} lost, "
              f"{time.perf_counter() - start:.0f} s, judge replicas {judge_replicas()}", flush=True)
    wall = time.perf_counter() - start
    memory_end = judge_memory()

    from ray import serve

    serve.shutdown()
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan")
    kept = set(memory_start) & set(memory_end)
    growth = max((memory_end[p] - memory_start[p] for p in kept), default=float("nan"))
    model = "a 2-layer random judge" if args.tiny else "its own model"
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs; {args.config.name} ({model}) with {args.tokens}-token budgets")
    print(f"{'requests':>9}{'concurrency':>12}{'lost':>6}{'wrong':>7}{'pairs/s':>9}{'p50 s':>8}{'p99 s':>8}")
    print(f"{args.requests:>9}{args.concurrency:>12}{lost:>6}{wrong:>7}{len(latencies) / wall:>9.2f}{p50:>8.2f}{p99:>8.2f}")
    print("judge replica RSS MB (start -> end): " + ", ".join(
        f"pid {p}: {memory_start.get(p, float('nan')):.0f} -> {memory_end.get(p, float('nan')):.0f}" for p in sorted(set(memory_start) | set(memory_end))))
    if codes:
        print(f"failed calls by status: {codes}")
    print(f"RESULT lost={lost} wrong={wrong} requests={args.requests} concurrency={args.concurrency} "
          f"rate={len(latencies) / wall:.2f} p50_s={p50:.2f} p99_s={p99:.2f} rss_growth_mb={growth:.0f}")


if __name__ == "__main__":
    main()
