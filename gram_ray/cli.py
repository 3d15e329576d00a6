"""The ``gram-ray`` command: maps subcommands onto the stage functions, nothing more.

    gram-ray compare --model default --prompt P --a TEXT --b TEXT
    gram-ray score pairs.jsonl.gz --model default --out scores.jsonl
    gram-ray model prepare [SPEC]        # resolve (and convert GGUF) once, e.g. at set-up time
    gram-ray model info SPEC
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from pydantic import ValidationError


def _add_scorer_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and scoring")
    g.add_argument("--model", default="default", help="default | smollm2-135m | HF dir | PEFT adapter dir | .gguf | hub id")
    g.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--device-map", default=None, help="'auto' spreads the model over all visible GPUs")
    g.add_argument("--orders", default="both", choices=["both", "ab"], help="judge both orders and average (default) or A-B only")
    g.add_argument("--max-prompt-tokens", type=int, default=1024, help="question budget; longer questions keep their start")
    g.add_argument("--max-response-tokens", type=int, default=1024, help="per-response budget; longer ones keep their start")
    g.add_argument("--max-batch-tokens", type=int, default=None, help="padded tokens per forward pass (default: 16384 on CUDA, 2048 on CPU)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from a hub repo")


def _scorer_config(args: argparse.Namespace) -> Any:
    from gram_ray.scorer import ScorerConfig

    return ScorerConfig(
        model=args.model,
        dtype=args.dtype,
        device=args.device,
        device_map=args.device_map,
        orders=args.orders,
        max_prompt_tokens=args.max_prompt_tokens,
        max_response_tokens=args.max_response_tokens,
        max_batch_tokens=args.max_batch_tokens,
        trust_remote_code=args.trust_remote_code,
    )


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def cmd_compare(args: argparse.Namespace) -> None:
    from gram_ray.scorer import GramScorer, Pair

    scorer = GramScorer.from_config(_scorer_config(args))
    (result,) = scorer.score([Pair(args.prompt, args.a, args.b)])
    _print({**result.as_dict(), "model": scorer.info()})


def cmd_score(args: argparse.Namespace) -> None:
    from gram_ray.score import ScoreConfig, score_file

    config = ScoreConfig(
        input=args.input, out=args.out, scorer=_scorer_config(args), skip_bad_rows=args.skip_bad_rows, limit=args.limit
    )
    _print(score_file(config).model_dump())


def cmd_model_prepare(args: argparse.Namespace) -> None:
    from gram_ray.models import resolve_model

    _print(resolve_model(args.spec).describe())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gram-ray", description="GRAM generative reward models on Ray")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compare", help="judge one pair; prints JSON with p_a_better, p_ab, p_ba")
    p.add_argument("--prompt", required=True, help="the user question")
    p.add_argument("--a", required=True, help="response A")
    p.add_argument("--b", required=True, help="response B")
    _add_scorer_args(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("score", help="score a JSONL(.gz) file of pairs")
    p.add_argument("input", help="JSONL or JSONL.gz: response_a/response_b or chosen/rejected rows")
    p.add_argument("--out", required=True, help="output JSONL (written atomically)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip and count malformed rows instead of stopping")
    p.add_argument("--limit", type=int, default=None, help="score only the first N rows")
    _add_scorer_args(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("model", help="model specs")
    msub = p.add_subparsers(dest="model_command", required=True)
    q = msub.add_parser("prepare", help="resolve a spec (converting GGUF to the cache once) and print it")
    q.add_argument("spec", nargs="?", default="default")
    q.set_defaults(func=cmd_model_prepare)
    q = msub.add_parser("info", help="print what a spec resolves to")
    q.add_argument("spec")
    q.set_defaults(func=cmd_model_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from gram_ray.data import DataError
    from gram_ray.models import ModelSpecError

    try:
        args.func(args)
    except (DataError, ModelSpecError, ValidationError, FileNotFoundError) as exc:
        print(f"gram-ray: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
