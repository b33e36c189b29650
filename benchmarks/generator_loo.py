"""Leave-one-task-out check of the generalization module on collected trajectories.

For each held-out task T: train a generator on every other task's trajectory (never T's), generate T's
adapter from T's unlabelled train-partition prompts, and evaluate on T's test partition
(log-likelihood protocol): the base model, the generated adapter, the mean of the training checkpoints
(what a collapsed generator produces), and T's own fine-tuned LoRA (the last checkpoint of its
trajectory). Also: time to generate vs time to fine-tune that LoRA.

    degaml collect --tasks arc_easy,boolq,piqa,hellaswag,winogrande,arc_challenge --out runs/gen/trajectories \\
        --burn_in_steps 100 --checkpoints 30 --lr 1e-3
    python benchmarks/generator_loo.py --trajectories runs/gen/trajectories --heldout arc_easy,boolq
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from degaml.cli import evaluate, generate, train_generator
from degaml.config import LoraSettings
from degaml.generator.generation import mean_adapter, write_adapter
from degaml.generator.trajectories import load_checkpoint, read_manifest


def accuracy(run: Path, metric: str) -> float:
    return json.loads((run / "results.json").read_text())["results"][0]["metrics"][metric]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=Path, default=Path("runs/gen/trajectories"))
    parser.add_argument("--heldout", default="arc_easy,boolq")
    parser.add_argument("--out", type=Path, default=Path("runs/gen/loo"))
    parser.add_argument("--decoder", default="cpu-small")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--limit", type=int, default=200)
    args = parser.parse_args()

    task_dirs = {read_manifest(d)["task"]: d for d in sorted(args.trajectories.iterdir()) if d.is_dir()}
    rows = []
    for task in args.heldout.split(","):
        out = args.out / task
        manifest = read_manifest(task_dirs[task])
        base_model = manifest["partition"]["model"]
        lora = LoraSettings(**manifest["lora"])
        train_generator(trajectories=args.trajectories, out=out / "generator", holdout=task, decoder=args.decoder,
                        steps=args.steps, progress=False)
        generate(generator=out / "generator", prompts=task, out=out / "generated")
        generation_seconds = json.loads((out / "generated" / "degaml.json").read_text())["generation_seconds"]
        others = [d for t, d in task_dirs.items() if t != task]
        write_adapter(mean_adapter(others), lora, base_model, out / "mean_of_training")
        own_last = task_dirs[task] / "checkpoints" / manifest["checkpoints"][-1]
        write_adapter(load_checkpoint(own_last), lora, base_model, out / "finetuned")
        scores = {}
        for name, adapter in (("base", None), ("generated", out / "generated"),
                              ("mean_of_training", out / "mean_of_training"), ("finetuned", out / "finetuned")):
            run = out / f"eval_{name}"
            if not (run / "results.json").exists():
                evaluate(model=base_model, tasks=task, limit=args.limit, adapter=adapter, out=run, progress=False)
            scores[name] = (accuracy(run, "acc"), accuracy(run, "acc_norm"))
        rows.append((task, scores, generation_seconds, manifest["train_seconds"]))

    print(f"\nlog-likelihood protocol, test partition, {args.limit} items per task; model {base_model}; "
          f"decoder {args.decoder}, {args.steps} steps\n")
    print("| held-out task | base | generated | mean of training ckpts | fine-tuned on task | generate s | fine-tune s | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for task, s, gen_s, tune_s in rows:
        cell = {k: f"{100 * a:.1f} / {100 * n:.1f}" for k, (a, n) in s.items()}
        print(f"| {task} | {cell['base']} | {cell['generated']} | {cell['mean_of_training']} | {cell['finetuned']} "
              f"| {gen_s:.2f} | {tune_s:.0f} | {tune_s / gen_s:.0f}x |")
    print("\ncells: acc / acc_norm (%)")


if __name__ == "__main__":
    main()
