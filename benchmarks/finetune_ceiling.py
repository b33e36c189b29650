"""How far do a task's own labels move the base model? The ceiling a zero-label adapter is measured against.

For each task, one LoRA (the run's rank, every linear layer, AdamW at a constant learning rate) is fine-tuned
on the task's train partition and scored after each of `--steps` (cumulative: `--steps 100,300` scores the
100-step adapter, then trains it 200 steps more), against the base model on the same first `--limit` test
items (log-likelihood, the task's preferred metric). Per task, each adapter minus the base model with a
paired bootstrap 95% interval. If even these adapters tie the base model on a task, no zero-label method
can be expected to beat it there at this model size.

Adapters and scores are written under --out and reused: a killed run resumes.

    python benchmarks/finetune_ceiling.py --tasks hellaswag,piqa,winogrande --steps 100,300 --limit 500 \\
        --out runs/ceiling
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from safetensors.torch import load_file

from degaml.baselines import BaselineSetup
from degaml.baselines.common import load_examples
from degaml.config import DataConfig, EvalConfig, LoraSettings, ModelConfig
from degaml.data import get_task
from degaml.evaluation.adapted import evaluate_adapted
from degaml.evaluation.metrics import prediction_correctness
from degaml.evaluation.statistics import paired_bootstrap
from degaml.io import atomic_write_json
from degaml.models import load_model, write_adapter
from degaml.models.lora import ADAPTER_WEIGHTS
from degaml.sft import fine_tune


def train(args, lm, task: str, root: Path) -> dict[int, Path]:
    """{steps: adapter directory} for every `--steps`, each continuing the previous one."""
    lora = LoraSettings(r=args.rank, alpha=2 * args.rank)
    setup = BaselineSetup(model=args.model, lora=lora, max_tokens=args.max_tokens, seed=args.seed)
    examples, adapters, done, state = None, {}, 0, None
    for steps in args.steps:
        out = root / task / f"steps-{steps}"
        if not (out / ADAPTER_WEIGHTS).is_file():
            examples = examples or load_examples(lm, task, setup, args.examples)
            started = time.perf_counter()
            state, losses = fine_tune(lm, lora, examples, steps - done, args.lr, args.batch_size,
                                      args.seed + done, init=state)
            write_adapter(state, lora, args.model, out,
                          info={"task": task, "steps": steps, "train_examples": len(examples), "lr": args.lr,
                                "batch_size": args.batch_size, "seconds": time.perf_counter() - started,
                                "continues": str(adapters[done]) if done else "", "last_losses": losses[-10:]})
            print(f"  {task}: {steps} steps ({len(examples)} train examples), last loss {losses[-1]:.3f}")
        state, done, adapters[steps] = load_file(str(out / ADAPTER_WEIGHTS)), steps, out
    return adapters


def score(args, lm, task: str, name: str, adapter: Path | None, root: Path) -> list[float]:
    """Per-item correctness under the task's preferred metric, cached per --limit."""
    path = root / "scores" / f"limit-{args.limit}" / task / f"{name}.json"
    if not path.is_file():
        metric = get_task(task).preferred_metric
        data = DataConfig(tasks=[task], split="test", limit=args.limit)
        (result,), _ = evaluate_adapted(lm, adapter, data, EvalConfig(), progress=False)
        atomic_write_json(path, {"metric": metric, "ids": [p["id"] for p in result.predictions],
                                 "correct": prediction_correctness(result.predictions, metric)})
        print(f"  scored {name:>10} on {task:<12} {100 * result.metrics[metric]:5.1f}")
    return json.loads(path.read_text())["correct"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="hellaswag,piqa,winogrande")
    parser.add_argument("--steps", default="100,300", help="comma-separated, increasing")
    parser.add_argument("--limit", type=int, default=500, help="test items per task (all when fewer)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--examples", type=int, default=2000, help="train examples per task (at most)")
    parser.add_argument("--max_tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/ceiling"))
    args = parser.parse_args()
    args.steps = [int(s) for s in args.steps.split(",") if s]
    if not args.steps or args.steps != sorted(set(args.steps)) or args.steps[0] < 1:
        parser.error(f"--steps must be increasing positive integers, got {args.steps}")
    tasks = [t for t in args.tasks.split(",") if t]
    root = args.out / args.model
    lm = load_model(ModelConfig(name=args.model, dtype=args.dtype))  # type: ignore[arg-type]
    rows = []
    for task in tasks:
        adapters = train(args, lm, task, root)
        base = score(args, lm, task, "base", None, root)
        for steps, adapter in adapters.items():
            tuned = score(args, lm, task, f"steps-{steps}", adapter, root)
            d = paired_bootstrap({task: tuned}, {task: base})
            rows.append(f"| {task} | {len(base)} | {100 * sum(base) / len(base):.1f} | {steps} x {args.batch_size} | "
                        f"{100 * sum(tuned) / len(tuned):.1f} | {d} {d.verdict} |")
    print(f"\n{args.model} ({args.dtype}), LoRA r {args.rank}, lr {args.lr}, seed {args.seed}; test items per task "
          f"up to {args.limit}, paired bootstrap 95% intervals\n")
    print("| task | items | base | fine-tuned on (steps x batch) | fine-tuned | minus base |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
