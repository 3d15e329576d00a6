"""Scoring speed: the upstream GRAM evaluation style against gram-ray's scorer, in one run.

    python benchmarks/score_speed.py                      # 200 pairs, embedded backbone, dtype auto
    python benchmarks/score_speed.py --pairs 20 --dtype float32

(a) upstream style (NiuTrans/GRAM ``gram_eval.py``): each pair alone, both orders in one padded
    batch, the model's full forward with full-vocabulary logits for every position; the verdict
    probability read from the last position.
(b) gram-ray's scorer: length-sorted token-budget batches, shared judge-prefix KV cache, last
    position only through the two verdict rows of the lm_head.

Both read the same pairs from ../shared/data/train_labeled.jsonl.gz with responses truncated to the
same token budget (keeping their start). Positions in (a) are computed from the attention mask, so
the two methods see identical inputs and |Δp| measures numerical agreement only.
Ends with ``RESULT speedup=… max_dp=… …``.
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
from gram_ray.scorer import GramScorer, ScorerConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train_labeled.jsonl.gz"


def upstream_style(scorer: GramScorer, pairs: list[Pair]) -> list[float]:
    """p(response_a better), both orders averaged, the way the upstream evaluation computes it."""
    model, tok = scorer.model, scorer.tokenizer
    ids_ab = scorer.tokens.ids
    tok.padding_side = "left"  # as upstream; positions still come from the mask below
    out = []
    for pair in pairs:
        texts = [
            judge.visible(judge.chat_prompt(tok, judge.verdict_content(pair.prompt, pair.response_a, pair.response_b))),
            judge.visible(judge.chat_prompt(tok, judge.verdict_content(pair.prompt, pair.response_b, pair.response_a))),
        ]
        batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        position_ids = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(**batch, position_ids=position_ids).logits  # [2, L, vocab]: every position
        p = torch.softmax(logits[:, -1, ids_ab].float(), dim=-1)
        out.append(0.5 * (p[0, 0].item() + p[1, 1].item()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--max-response-tokens", type=int, default=256)
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    parser.add_argument("--max-batch-tokens", type=int, default=None, help="default: the scorer's (device-dependent)")
    args = parser.parse_args()

    rows, _ = read_pairs(DATA, limit=args.pairs)
    config = ScorerConfig(
        model=args.model, dtype=args.dtype, max_response_tokens=args.max_response_tokens,
        max_prompt_tokens=512, max_batch_tokens=args.max_batch_tokens,
    )
    scorer = GramScorer.from_config(config)
    # Truncate once so that both methods score exactly the same texts.
    texts, _ = scorer.truncate_pairs([r.pair for r in rows])
    pairs = [Pair(q, a, b) for q, a, b in texts]
    dtype = scorer.info()["dtype"]

    scorer.score(pairs[:2])  # warm-up (also builds the shared-prefix cache)
    upstream_style(scorer, pairs[:1])
    scorer.tokenizer.padding_side = "right"

    start = time.perf_counter()
    ours = [r.p_a_better for r in scorer.score(pairs)]
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    theirs = upstream_style(scorer, pairs)
    t_theirs = time.perf_counter() - start

    max_dp = max(abs(a - b) for a, b in zip(ours, theirs, strict=True))
    speedup = t_theirs / t_ours
    n = len(pairs)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"model: {args.model}, dtype {dtype}, {n} pairs, responses truncated to {args.max_response_tokens} tokens")
    print(f"{'method':<34}{'seconds':>10}{'pairs/s':>10}")
    print(f"{'(a) upstream style (full logits)':<34}{t_theirs:>10.1f}{n / t_theirs:>10.3f}")
    print(f"{'(b) gram-ray scorer':<34}{t_ours:>10.1f}{n / t_ours:>10.3f}")
    print(f"speedup (b)/(a): {speedup:.2f}x   max |dp|: {max_dp:.2e}")
    print(
        f"RESULT speedup={speedup:.2f} max_dp={max_dp:.2e} pairs_per_s_ours={n / t_ours:.3f} "
        f"pairs_per_s_upstream={n / t_theirs:.3f} pairs={n} dtype={dtype}"
    )


if __name__ == "__main__":
    main()
