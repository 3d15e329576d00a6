"""Train a policy with TRL's GRPO, the running gram-ray service as its only reward.

    serve run serve_configs/gram.yaml &          # the reward service (gRPC on 127.0.0.1:50051)
    python scripts/grpo_with_gram.py --steps 10  # SmolLM2-135M-Instruct as the policy, on the CPU

Prompts are the first questions of `../shared/data/train_unlabeled.jsonl.gz` (as chat messages).
Each step samples `--generations` completions per prompt; the service judges each group
(`grpo_reward_function`, anchor scoring) and GRPO normalises the rewards within the group. The
reward curve goes to `<out>/curve.jsonl` (one line per step: mean reward, its spread, reward-call
latency) and `<out>/curve.png`, both written atomically; the last line is
`RESULT steps=… first_reward=… last_reward=…`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--policy", default="smollm2-135m", help="a gram-ray model spec for the policy")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--out", default=str(ROOT / "runs" / "grpo"))
    args = parser.parse_args()

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from gram_ray.client import grpo_reward_function
    from gram_ray.data import atomic_writer, read_pairs
    from gram_ray.models import cpu_supports_bf16, load_causal_lm, load_tokenizer, resolve_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, _ = read_pairs(ROOT.parent / "shared" / "data" / "train_unlabeled.jsonl.gz", limit=args.prompts)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": r.pair.prompt}]} for r in rows])
    source = resolve_model(args.policy)
    policy, tokenizer = load_causal_lm(source, is_trainable=True), load_tokenizer(source)

    reward = grpo_reward_function(args.address, timeout_s=300)
    calls: list[dict] = []

    def gram(prompts, completions, **kwargs):
        started = time.perf_counter()
        values = reward(prompts, completions, **kwargs)
        calls.append({"completions": len(values), "seconds": time.perf_counter() - started, "mean": sum(values) / len(values)})
        return values

    # TRL's defaults (bf16, gradient checkpointing) suit a GPU: on a 2-core AVX2 CPU (no native bf16) a step
    # took 5-7 minutes with them. bf16 only where the CPU has it; no checkpointing for a 135M policy.
    config = GRPOConfig(
        output_dir=str(out / "trainer"), max_steps=args.steps, per_device_train_batch_size=args.generations,
        num_generations=args.generations, max_completion_length=args.max_completion_length, learning_rate=args.lr,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, seed=0,
        bf16=cpu_supports_bf16(), gradient_checkpointing=False,
    )
    trainer = GRPOTrainer(model=policy, reward_funcs=[gram], args=config, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()

    logged = [e for e in trainer.state.log_history if "reward" in e]
    curve = [{"step": i + 1, "reward": e["reward"], "reward_std": e.get("reward_std"),
              "reward_call_seconds": calls[i]["seconds"] if i < len(calls) else None} for i, e in enumerate(logged)]
    with atomic_writer(out / "curve.jsonl") as f:
        f.writelines(json.dumps(c) + "\n" for c in curve)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([c["step"] for c in curve], [c["reward"] for c in curve], marker="o")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean GRAM reward (log-odds)")
    tmp = out / "curve.tmp.png"
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.rename(out / "curve.png")
    for c in curve:
        print(f"step {c['step']:>3}  reward {c['reward']:+.4f}  reward call {c['reward_call_seconds'] or math.nan:.2f} s")
    print(f"RESULT steps={len(curve)} first_reward={curve[0]['reward']:.4f} last_reward={curve[-1]['reward']:.4f}")


if __name__ == "__main__":
    main()
