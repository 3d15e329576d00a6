"""The ``gram-ray`` command: maps subcommands onto the stage functions, nothing more.

    gram-ray compare --model default --prompt P --a TEXT --b TEXT [--reasoning --votes K]
    gram-ray score pairs.jsonl.gz --model default --out scores.jsonl
    gram-ray model prepare [SPEC]        # resolve (and convert GGUF) once, e.g. at set-up time
    gram-ray model info SPEC
    gram-ray client health|compare|rank|reward [--address 127.0.0.1:50051] …
    gram-ray split ../shared/data/train_labeled.jsonl.gz --train-out T --heldout-out H [--heldout-fraction 0.05]
    gram-ray train train_configs/finetune.yaml [--set key=value …]
    gram-ray self-train train_configs/self_train.yaml [--set key=value …]
    gram-ray eval ../shared/data/dev_rmbench_code.jsonl.gz --model default --out runs/eval/rmbench-code
    gram-ray calibrate runs/data/labeled_heldout.jsonl.gz --model DIR --out runs/calibrate --offset 500 --limit 300
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


def add_config_arguments(
    group: Any, config: type[BaseModel], fields: list[str], flags: dict[str, str] | None = None,
) -> None:
    """One ``--flag`` per config field, its default, help text and choices taken from the pydantic
    field, so the command line can never disagree with the config it fills."""
    for name in fields:
        info = config.model_fields[name]
        flag = (flags or {}).get(name, "--" + name.replace("_", "-"))
        kwargs: dict[str, Any] = {"dest": name, "default": info.default, "help": info.description or ""}
        annotation = info.annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(annotation) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(annotation))
        else:
            base = args[0] if args else annotation
            if typing.get_origin(base) is typing.Literal:
                kwargs["choices"] = list(typing.get_args(base))
            elif base in (int, float):
                kwargs["type"] = base
        if kwargs["default"] is not None and "action" not in kwargs:
            kwargs["help"] = f"{kwargs['help']} (default: %(default)s)".strip()
        group.add_argument(flag, **kwargs)


SCORER_FLAGS = ["model", "dtype", "device", "device_map", "orders", "max_prompt_tokens", "max_response_tokens",
                "max_batch_tokens", "trust_remote_code", "calibrated"]
SAMPLING_FLAGS = ["temperature", "top_p", "max_new_tokens", "seed"]


def _add_scorer_args(p: argparse.ArgumentParser) -> None:
    from gram_ray.scorer import ScorerConfig

    add_config_arguments(p.add_argument_group("model and scoring"), ScorerConfig, SCORER_FLAGS)


def _add_reasoning_args(p: argparse.ArgumentParser) -> None:
    from gram_ray.reasoning import SamplingConfig

    g = p.add_argument_group("GRAM-R² reasoning (a reasoning model writes rationales, then votes)")
    g.add_argument("--reasoning", action="store_true", help="sample rationales and take a majority vote")
    g.add_argument("--votes", type=int, default=1, help="rationales sampled per pair and order (k)")
    add_config_arguments(g, SamplingConfig, SAMPLING_FLAGS)


def _sampling_config(args: argparse.Namespace) -> Any:
    from gram_ray.reasoning import SamplingConfig

    return SamplingConfig(**{name: getattr(args, name) for name in SAMPLING_FLAGS})


def _scorer_config(args: argparse.Namespace) -> Any:
    from gram_ray.scorer import ScorerConfig

    return ScorerConfig(**{name: getattr(args, name) for name in SCORER_FLAGS})


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def cmd_compare(args: argparse.Namespace) -> None:
    from gram_ray.judge import Pair
    from gram_ray.scorer import GramScorer

    scorer = GramScorer.from_config(_scorer_config(args))
    pair = Pair(args.prompt, args.a, args.b)
    if args.reasoning:
        (result,) = scorer.score_reasoning([pair], args.votes, sampling=_sampling_config(args))
    else:
        (result,) = scorer.score([pair])
    _print({**result.as_dict(), "model": scorer.info()})


def cmd_score(args: argparse.Namespace) -> None:
    from gram_ray.score_file import ScoreConfig, score_file

    config = ScoreConfig(
        input=args.input, out=args.out, scorer=_scorer_config(args), skip_bad_rows=args.skip_bad_rows, limit=args.limit
    )
    _print(score_file(config).model_dump())


def cmd_eval(args: argparse.Namespace) -> None:
    from gram_ray.eval.run import EvalConfig, evaluate

    config = EvalConfig(
        data=args.data, out=args.out, format=args.format, scorer=_scorer_config(args), offset=args.offset, limit=args.limit,
        num_actors=args.num_actors, reasoning=args.reasoning, votes=args.votes, sampling=_sampling_config(args),
    )
    metrics = evaluate(config)
    _print({"headline": metrics["headline"], "pairs": metrics["pairs"], "out": str(args.out)})


def cmd_calibrate(args: argparse.Namespace) -> None:
    from gram_ray.eval.calibrate import CalibrateConfig, calibrate
    from gram_ray.models import resolve_model

    source = resolve_model(args.model)  # a spec such as "default" names a directory too
    if source.kind == "hub":
        raise ValueError(f"--model: {args.model} is a hub id; calibrate a local model directory")
    config = CalibrateConfig(
        model=source.path, data=args.data, predictions=args.predictions, out=args.out, offset=args.offset,
        limit=args.limit, scorer=_scorer_config(args), num_actors=args.num_actors,
    )
    _print(calibrate(config))


def cmd_split(args: argparse.Namespace) -> None:
    from gram_ray.data import split_by_prompt

    n_train, n_heldout = split_by_prompt(args.data, args.train_out, args.heldout_out, args.heldout_fraction, args.seed, args.salt)
    _print({"train": n_train, "heldout": n_heldout, "train_out": args.train_out, "heldout_out": args.heldout_out})


def cmd_train(args: argparse.Namespace) -> None:
    from gram_ray.train.config import load_train_config
    from gram_ray.train.run import train

    result = train(load_train_config(args.config, args.set))
    _print(result.model_dump())


def cmd_self_train(args: argparse.Namespace) -> None:
    from gram_ray.train.self_train import load_self_train_config, self_train

    _print(self_train(load_self_train_config(args.config, args.set)))


def cmd_model_export_checkpoint(args: argparse.Namespace) -> None:
    from pathlib import Path

    from gram_ray.train.config import load_train_config
    from gram_ray.train.loop import export_checkpoint

    path = export_checkpoint(load_train_config(args.config, args.set), Path(args.checkpoint), Path(args.out))
    _print({"model": str(path)})


def cmd_model_prepare(args: argparse.Namespace) -> None:
    from gram_ray.models import resolve_model

    _print(resolve_model(args.spec).describe())


def _client(args: argparse.Namespace) -> Any:
    from gram_ray.client import GramClient

    return GramClient(args.address, timeout_s=args.timeout, tls_ca_file=args.tls_ca_file)


def cmd_client_health(args: argparse.Namespace) -> None:
    with _client(args) as client:
        _print(client.health())


def cmd_client_compare(args: argparse.Namespace) -> None:
    with _client(args) as client:
        _print(client.compare_one(args.prompt, args.a, args.b, orders=args.orders, reasoning=args.reasoning, votes=args.votes))


def cmd_client_rank(args: argparse.Namespace) -> None:
    with _client(args) as client:
        _print(client.rank(args.prompt, args.responses, strategy=args.strategy, orders=args.orders))


def cmd_client_reward(args: argparse.Namespace) -> None:
    with _client(args) as client:
        (reward,) = client.reward([args.prompt], [args.response], references=[args.reference], orders=args.orders)
        _print({"reward": reward})


def _add_client_parsers(sub: Any) -> None:
    try:
        from gram_ray.client import DEFAULT_ADDRESS
    except (ImportError, RuntimeError) as exc:  # grpcio missing or older than the stubs: the other subcommands still work
        reason = f"unavailable here ({exc})"
        p = sub.add_parser("client", help=f"call a running reward service over gRPC: {reason}")
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=lambda args: sys.exit(f"gram-ray client: {reason}"))
        return

    p = sub.add_parser("client", help="call a running reward service over gRPC")
    csub = p.add_subparsers(dest="client_command", required=True)

    def common(q: argparse.ArgumentParser, orders: bool = True) -> None:
        q.add_argument("--address", default=DEFAULT_ADDRESS, help=f"HOST:PORT of the service (default {DEFAULT_ADDRESS}, as serve_configs/gram.yaml binds)")
        q.add_argument("--timeout", type=float, default=120.0, help="deadline per call in seconds")
        q.add_argument("--tls-ca", dest="tls_ca_file", default=None, help="PEM certificate to trust: connect over TLS (the bearer "
                       "token, if the service wants one, is read from $GRAM_RAY_AUTH_TOKEN)")
        if orders:
            q.add_argument("--orders", default="both", choices=["both", "ab"])

    q = csub.add_parser("health", help="model info and status")
    common(q, orders=False)
    q.set_defaults(func=cmd_client_health)
    q = csub.add_parser("compare", help="p(A better) for one pair")
    q.add_argument("--prompt", required=True)
    q.add_argument("--a", required=True)
    q.add_argument("--b", required=True)
    q.add_argument("--reasoning", action="store_true", help="GRAM-R²: ask for rationales and a vote (server must enable it)")
    q.add_argument("--votes", type=int, default=0, help="rationales per pair and order with --reasoning (0 = 1)")
    common(q)
    q.set_defaults(func=cmd_client_compare)
    q = csub.add_parser("rank", help="rank N responses to one prompt")
    q.add_argument("--prompt", required=True)
    q.add_argument("--responses", nargs="+", required=True)
    q.add_argument("--strategy", default="knockout", choices=["knockout", "tournament", "round_robin"])
    common(q)
    q.set_defaults(func=cmd_client_rank)
    q = csub.add_parser("reward", help="log-odds that the response beats the reference")
    q.add_argument("--prompt", required=True)
    q.add_argument("--response", required=True)
    q.add_argument("--reference", required=True)
    common(q)
    q.set_defaults(func=cmd_client_reward)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gram-ray", description="GRAM generative reward models on Ray")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compare", help="judge one pair; prints JSON with p_a_better, p_ab, p_ba")
    p.add_argument("--prompt", required=True, help="the user question")
    p.add_argument("--a", required=True, help="response A")
    p.add_argument("--b", required=True, help="response B")
    _add_scorer_args(p)
    _add_reasoning_args(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("score", help="score a JSONL(.gz) file of pairs")
    p.add_argument("input", help="JSONL or JSONL.gz: response_a/response_b or chosen/rejected rows")
    p.add_argument("--out", required=True, help="output JSONL (written atomically)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip and count malformed rows instead of stopping")
    p.add_argument("--limit", type=int, default=None, help="score only the first N rows")
    _add_scorer_args(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("eval", help="evaluate on a benchmark file (Ray Data batch inference); writes metrics, predictions, report")
    p.add_argument("data", help="JSONL(.gz): plain pairs, RM-Bench, JudgeBench or RewardBench rows")
    p.add_argument("--out", required=True, help="output directory: metrics.json, predictions.jsonl, report.md, plots")
    p.add_argument("--format", default="auto", choices=["auto", "pairs", "rmbench", "judgebench", "rewardbench"])
    p.add_argument("--offset", type=int, default=0, help="skip the first N rows")
    p.add_argument("--limit", type=int, default=None, help="first N rows (prompts) only, after --offset")
    p.add_argument("--num-actors", type=int, default=None, help="scorer actors (default: one per GPU, else one per 2 CPUs; 0: score in this process, without Ray)")
    _add_scorer_args(p)
    _add_reasoning_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("calibrate", help="fit a judge's position bias and temperature on held-out pairs; "
                       "writes calibration.json into the model directory")
    p.add_argument("data", nargs="?", default=None, help="labeled pairs (JSONL(.gz)) to judge and fit on")
    p.add_argument("--predictions", default=None, help="instead of data: an existing gram-ray eval's predictions.jsonl")
    p.add_argument("--out", default=None, help="with data: where the fit rows' evaluation is written")
    p.add_argument("--offset", type=int, default=0, help="skip the first N rows (keep the rows you report out of the fit)")
    p.add_argument("--limit", type=int, default=None, help="then use N rows")
    p.add_argument("--num-actors", type=int, default=None, help="scorer actors (default: one per GPU, else one per 2 CPUs; 0: score in this process, without Ray)")
    _add_scorer_args(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("split", help="split a JSONL(.gz) file by prompt into train and held-out files")
    p.add_argument("data", help="JSONL(.gz) rows with a prompt field")
    p.add_argument("--train-out", required=True)
    p.add_argument("--heldout-out", required=True)
    p.add_argument("--heldout-fraction", type=float, default=0.05, help="share of prompts held out (by a hash of the prompt)")
    p.add_argument("--seed", type=int, default=0, help="shuffles the held-out rows (so --limit samples many prompts)")
    p.add_argument("--salt", default="gram-ray",
                   help="mixed into the prompt hash; splitting a train split again needs another salt")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("train", help="run a Ray Train job from train_configs/*.yaml")
    p.add_argument("config", help="a YAML training config, e.g. train_configs/finetune.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field (dotted keys nest: lora.r=8); repeatable")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("self-train", help="GRAM-R² self-training rounds on unlabeled pairs (train_configs/self_train.yaml)")
    p.add_argument("config", help="e.g. train_configs/self_train.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field; repeatable")
    p.set_defaults(func=cmd_self_train)

    p = sub.add_parser("model", help="model specs")
    msub = p.add_subparsers(dest="model_command", required=True)
    q = msub.add_parser("prepare", help="resolve a spec (converting GGUF to the cache once) and print it")
    q.add_argument("spec", nargs="?", default="default")
    q.set_defaults(func=cmd_model_prepare)
    q = msub.add_parser("info", help="print what a spec resolves to")
    q.add_argument("spec")
    q.set_defaults(func=cmd_model_prepare)
    q = msub.add_parser("export-checkpoint", help="turn a training checkpoint (of a stopped run) into a model directory")
    q.add_argument("config", help="the run's training config")
    q.add_argument("checkpoint", help="a checkpoint_* directory under <output_dir>/ray/run")
    q.add_argument("--out", required=True, help="where the model lands (<out>/final)")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="the overrides the run used")
    q.set_defaults(func=cmd_model_export_checkpoint)

    _add_client_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        from grpc import RpcError
    except ImportError:  # without grpcio there are no client calls to fail
        RpcError = type("RpcError", (Exception,), {})

    from gram_ray.data import DataError
    from gram_ray.models import ModelSpecError

    try:
        args.func(args)
    except (DataError, ModelSpecError, ValidationError, FileNotFoundError, ValueError) as exc:
        print(f"gram-ray: error: {exc}", file=sys.stderr)
        return 2
    except RpcError as exc:
        print(f"gram-ray: error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
