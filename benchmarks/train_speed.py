"""Training speed: the stage-2 step as `gram-ray train` runs it, and the two-row head vs the SFT style.

    python benchmarks/train_speed.py --recipe             # (1) gram-ray train, before/after, on real pairs
    python benchmarks/train_speed.py                      # (2) two-row head vs SFT, batch 4 x 600 tokens
    python benchmarks/train_speed.py --steps 5 --lora-last-layers 0   # (2) with full fine-tuning

(1) ``--recipe`` runs ``gram-ray train train_configs/finetune.yaml`` (Ray Train, one worker, the stage-1
adapter, 256-token budgets, the same labeled pairs in the same order, steps of 4 pairs) four times:
*before* (the old defaults: a worker holding 1 CPU, 4 pairs per padded micro-batch, every sequence run
whole); *padded* (the worker holds the machine's CPUs, the judge instruction's key/value states
computed once per micro-batch and shared, 4 pairs padded together); *pair per micro-batch*
(``batch_size=1 grad_accum=4``: no padding, but the prefix once per pair); *after* (the defaults:
``batch_size=4``, the prefix once per micro-batch, each pair's equal-length sequences run on their own
without padding, ``unpadded: null`` = on a CPU). It reports training tokens/s from each run's
metrics.json (optimizer steps only) and the |Δloss| of the shared-prefix and unpadded losses against
the padded whole-sequence loss on one fixed batch. Ends with ``RESULT speedup=… max_dloss=…``.

(a) SFT style: the verdict token as the label of a causal-LM loss, so the model computes
    full-vocabulary logits at every position (``model(input_ids, labels=…)``).
(b) gram-ray: the decoder's last hidden state × the two verdict rows, ``verdict_loss`` with label
    smoothing (gram_ray.train.modules.VerdictLoss).
Both run forward + backward + optimizer step on the same batch with the same trainable parameters
(LoRA on the top layers by default, as train_configs/ do). Each method runs in its own subprocess so
that its peak memory (CUDA: max allocated; CPU: peak RSS above the loaded model) is its own.
Ends with ``RESULT speedup=… memory_ratio=…``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_method(method: str, args: argparse.Namespace) -> dict:
    from peft import LoraConfig, get_peft_model

    from gram_ray.judge import VerdictTokens
    from gram_ray.models import load_causal_lm, load_tokenizer, resolve_device, resolve_model
    from gram_ray.train.examples import Batch
    from gram_ray.train.modules import VerdictLoss

    device = resolve_device("auto")
    source = resolve_model(args.model)
    tokenizer = load_tokenizer(source)
    model = load_causal_lm(source, dtype=torch.float32, device=device, is_trainable=True)
    if args.lora_last_layers > 0:
        n = model.config.num_hidden_layers
        model = get_peft_model(model, LoraConfig(
            r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            layers_to_transform=list(range(n - args.lora_last_layers, n)),
        ))
    model.train()
    tokens = VerdictTokens.from_tokenizer(tokenizer)
    torch.manual_seed(0)
    ids = torch.randint(100, 40000, (args.batch, args.tokens), device=device)
    mask = torch.ones_like(ids)
    target = torch.tensor([0, 1] * (args.batch // 2) + [0] * (args.batch % 2), device=device)
    lengths = torch.full((args.batch,), args.tokens, device=device)
    labels = torch.full_like(ids, -100)
    # SFT style: the verdict is the label of the last position, i.e. what follows the prompt.
    ids_sft = torch.cat([ids, torch.where(target == 0, tokens.a, tokens.b)[:, None]], dim=1)
    labels_sft = torch.cat([labels, torch.where(target == 0, tokens.a, tokens.b)[:, None]], dim=1)
    module = VerdictLoss(model, tokens.ids, label_smoothing=0.1)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step() -> float:
        if method == "sft":
            loss = model(input_ids=ids_sft, attention_mask=torch.ones_like(ids_sft), labels=labels_sft).loss
        else:
            loss = module(Batch(ids, mask, lengths, target=target))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    base_rss = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    step()  # warm-up (also allocates optimizer state, identical for both methods)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    return {"seconds_per_step": seconds, "tokens_per_s": args.batch * args.tokens / seconds, "peak_mb": peak, "device": str(device)}


def fixed_batch_losses(root) -> dict[str, float]:
    """The verdict loss of one fixed batch of 4 real pairs (both orders): padded whole sequences, the
    shared judge-instruction prefix, and the prefix with each length's sequences unpadded (eval mode:
    no dropout, so all must agree)."""
    from gram_ray import judge
    from gram_ray.data import read_pairs
    from gram_ray.train.config import TrainConfig
    from gram_ray.train.examples import verdict_batch
    from gram_ray.train.loop import build_model
    from gram_ray.train.modules import VerdictLoss
    from scripts.ablation import SPLITS, STAGE1

    cfg = TrainConfig(stage="finetune", model=str(root / STAGE1), data=["unused"], output_dir="/tmp/unused",
                      lora={"last_layers": 8})
    model, tokenizer, _ = build_model(cfg, torch.device("cpu"))
    model.eval()
    ids = judge.VerdictTokens.from_tokenizer(tokenizer).ids
    prefix = judge.verdict_prefix_ids(tokenizer)
    rows, _ = read_pairs(SPLITS / "labeled_train.jsonl.gz", limit=4)
    batch = verdict_batch(rows, tokenizer, 256, 256)
    with torch.no_grad():
        return {
            "whole": VerdictLoss(model, ids, 0.1, unpadded=False)(batch).item(),
            "shared prefix": VerdictLoss(model, ids, 0.1, prefix, unpadded=False)(batch).item(),
            "shared prefix, unpadded": VerdictLoss(model, ids, 0.1, prefix, unpadded=True)(batch).item(),
        }


def max_dloss(losses: dict[str, float]) -> float:
    return max(abs(v - losses["whole"]) for v in losses.values())


# name → (pairs run through the decoder together, --set items); every run takes steps of 4 pairs
RECIPE_RUNS = {
    "before": (4, ["resources_per_worker={CPU: 1}", "batch_size=4", "grad_accum=1", "share_prefix=false", "unpadded=false"]),
    "padded": (4, ["batch_size=4", "grad_accum=1", "share_prefix=true", "unpadded=false"]),
    "pair per micro-batch": (1, ["batch_size=1", "grad_accum=4", "share_prefix=true"]),
    "after": (4, ["batch_size=4", "grad_accum=1", "share_prefix=true"]),
}


def recipe(args: argparse.Namespace) -> None:
    import os
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from scripts.ablation import GRAM_CLI, SPLITS, STAGE1, make_splits

    make_splits()
    results = {}
    for name, (_, sets) in RECIPE_RUNS.items():
        out = root / "runs" / "bench_train_speed" / name.replace(" ", "_")
        shutil.rmtree(out, ignore_errors=True)
        cmd = [*GRAM_CLI, "train", "train_configs/finetune.yaml"]
        for item in [f"model={STAGE1}", f"data=[{SPLITS / 'labeled_train.jsonl.gz'}]", f"output_dir={out}", "num_workers=1",
                     f"max_steps={args.steps}", "lr=1e-3", "max_prompt_tokens=256", "max_response_tokens=256",
                     f"checkpoint_every={args.steps}", f"log_every={args.steps}", *sets]:
            cmd += ["--set", item]
        subprocess.run(cmd, check=True, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(root)})
        results[name] = json.loads((out / "metrics.json").read_text())

    losses = fixed_batch_losses(root)
    after = results["after"]
    print(f"gram-ray train, stage 2 from the stage-1 adapter, {args.steps} steps of 4 pairs (both orders), "
          f"256-token budgets, {os.cpu_count()} CPUs, compute {after['compute_dtype']}, CPU flags {after['cpu_flags']}")
    print(f"{'run':<22}{'threads':>8}{'pairs/forward':>15}{'shared prefix':>15}{'tokens/s':>10}{'s/step':>8}")
    for name, (pairs, sets) in RECIPE_RUNS.items():
        m = results[name]
        unpadded = "unpadded=false" not in sets
        print(f"{name:<22}{m['torch_threads']:>8}{str(pairs) + (' unpadded' if unpadded and pairs > 1 else ''):>15}"
              f"{m['shared_prefix_tokens']:>15}{m['tokens_per_s']:>10.0f}{m['train_seconds'] / m['steps']:>8.1f}")
    print("loss on a fixed batch: " + ", ".join(f"{k} {v:.6f}" for k, v in losses.items()))
    tps = {name: results[name]["tokens_per_s"] for name in RECIPE_RUNS}
    print(f"RESULT speedup={tps['after'] / tps['before']:.2f} over_padded={tps['after'] / tps['padded']:.2f} "
          f"over_pair_per_micro_batch={tps['after'] / tps['pair per micro-batch']:.2f} "
          + " ".join(f"tokens_per_s_{k.replace(' ', '_').replace('-', '_')}={v:.0f}" for k, v in tps.items())
          + f" max_dloss={max_dloss(losses):.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=600)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lora-last-layers", type=int, default=8, help="0 = full fine-tuning")
    parser.add_argument("--method", choices=["sft", "gram"], help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--recipe", action="store_true", help="(1): gram-ray train before/after on real pairs")
    parser.add_argument("--check-loss", action="store_true", help="(1)'s |Δloss| check alone")
    args = parser.parse_args()
    if args.check_loss:
        from pathlib import Path

        root = Path(__file__).resolve().parent.parent
        sys.path.insert(0, str(root))
        losses = fixed_batch_losses(root)
        print("loss on a fixed batch: " + ", ".join(f"{k} {v:.6f}" for k, v in losses.items()))
        print(f"RESULT max_dloss={max_dloss(losses):.2e}")
        return
    if args.recipe:
        recipe(args)
        return
    if args.method:
        print(json.dumps(run_method(args.method, args)))
        return
    results = {}
    for method in ("sft", "gram"):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--method", method], capture_output=True, text=True, check=True)
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
    sft, gram = results["sft"], results["gram"]
    speedup = gram["tokens_per_s"] / sft["tokens_per_s"]
    memory_ratio = gram["peak_mb"] / sft["peak_mb"]
    setup = f"LoRA on the top {args.lora_last_layers} layers" if args.lora_last_layers else "full fine-tuning"
    print(f"model {args.model}, batch {args.batch} x {args.tokens} tokens, {setup}, device {gram['device']}, "
          f"{torch.get_num_threads()} threads, mean of {args.steps} steps")
    print(f"{'method':<34}{'s/step':>9}{'tokens/s':>11}{'peak MB':>10}")
    print(f"{'(a) SFT style, full-vocab logits':<34}{sft['seconds_per_step']:>9.2f}{sft['tokens_per_s']:>11.0f}{sft['peak_mb']:>10.0f}")
    print(f"{'(b) verdict loss, two-row head':<34}{gram['seconds_per_step']:>9.2f}{gram['tokens_per_s']:>11.0f}{gram['peak_mb']:>10.0f}")
    print(f"speedup {speedup:.2f}x, memory {memory_ratio:.2f}x")
    print(f"RESULT speedup={speedup:.2f} memory_ratio={memory_ratio:.2f} tokens_per_s_gram={gram['tokens_per_s']:.0f} "
          f"tokens_per_s_sft={sft['tokens_per_s']:.0f} peak_mb_gram={gram['peak_mb']:.0f} peak_mb_sft={sft['peak_mb']:.0f}")


if __name__ == "__main__":
    main()
