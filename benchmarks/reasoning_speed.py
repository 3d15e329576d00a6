"""GRAM-R² voting speed: k samples per prompt with one shared prompt prefill against Hugging Face's
``num_return_sequences`` (which repeats the prompt's prefill k times), in one run.

    python benchmarks/reasoning_speed.py                          # 8 pairs, k=5, the shipped model
    python benchmarks/reasoning_speed.py --model runs/r2/reasoner/final --pairs 4 --votes 5

Both generate from the same reasoning-judge prompts (pairs of ../shared/data/train_labeled.jsonl.gz,
question and responses cut to 128 tokens, both orders) with the same seed, so their samples agree
(``same_samples``: the fraction identical; the two compute the prompt in different shapes, so a
near-tie token can rarely go the other way and the sample diverges from there); the shared prefill
only removes repeated prompt compute. Prompts are ~500 tokens and rationales ~70, so on a CPU the
prefill is a large part of a sample's cost.
Ends with ``RESULT speedup=… same_samples=… …``.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from gram_ray import judge
from gram_ray.data import read_pairs
from gram_ray.judge import Pair
from gram_ray.reasoning import SamplingConfig, generate
from gram_ray.scorer import GramScorer, ScorerConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train_labeled.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--votes", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per generate call")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    scorer = GramScorer.from_config(ScorerConfig(model=args.model, dtype=args.dtype, max_prompt_tokens=128, max_response_tokens=128))
    rows, _ = read_pairs(DATA, limit=args.pairs)
    texts, _ = scorer.truncate_pairs([Pair(judge.render_question(r.pair.prompt), r.pair.response_a, r.pair.response_b) for r in rows])
    contents = [judge.reasoning_content(q, a, b) for q, a, b in texts] + [judge.reasoning_content(q, b, a) for q, a, b in texts]
    prompt_tokens = sum(len(judge.encode_user_turn(scorer.tokenizer, c)) for c in contents)
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.95, batch_size=args.batch_size, seed=0)

    generate(scorer.model, scorer.tokenizer, contents[:1], SamplingConfig(max_new_tokens=2), 2)  # warm-up
    results = {}
    for name, share in (("num_return_sequences", False), ("shared prefill", True)):
        started = time.perf_counter()
        out = generate(scorer.model, scorer.tokenizer, contents, sampling, args.votes, share_prefill=share)
        results[name] = (time.perf_counter() - started, out)

    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"model {args.model}, {len(contents)} prompts ({prompt_tokens / len(contents):.0f} tokens on average) × "
          f"{args.votes} samples, ≤{args.max_new_tokens} new tokens")
    print("| method | seconds | samples/s | generated tokens/s |\n|---|---:|---:|---:|")
    for name, (seconds, out) in results.items():
        print(f"| {name} | {seconds:.1f} | {len(contents) * args.votes / seconds:.2f} | {out.new_tokens / seconds:.1f} |")
    (slow, a), (fast, b) = results.values()
    pairs = [(x, y) for xs, ys in zip(a.texts, b.texts, strict=True) for x, y in zip(xs, ys, strict=True)]
    same = sum(x == y for x, y in pairs) / len(pairs)
    print(f"RESULT speedup={slow / fast:.2f} same_samples={same:.3f} votes={args.votes} "
          f"prompts={len(contents)} tokens_per_s={b.new_tokens / fast:.1f}")


if __name__ == "__main__":
    main()
