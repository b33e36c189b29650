"""Train and evaluate every baseline on held-out tasks; print test accuracy, training time and peak memory
beside the base model.

Each baseline runs in its own process (`degaml baseline ...`), so its peak RSS is its own. Finished
baselines and evaluations are skipped, so the script resumes.

    python benchmarks/baselines_table.py --heldout arc_easy,boolq \\
        --tasks arc_easy,boolq,piqa,hellaswag,winogrande,arc_challenge
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

METHODS = {  # name in the table: (`degaml baseline` sub-command, its extra flags)
    "no-meta": ("no-meta", []),
    "union": ("union", []),
    "union+ft": ("union-finetune", []),
    "maml-1": ("maml", ["--maml.order", "1"]),
    "abmll": ("abmll", []),
    # Second order costs ~3x a first-order meta-step and ~13 GB on SmolLM2 at 256 tokens: a third of the budget.
    "maml-2 (10 meta-steps)": ("maml", ["--maml.order", "2", "--maml.meta_steps", "10"]),
}


def degaml(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "degaml.cli", *args], check=True)


def scores(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())["results"][0]["metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", default="arc_easy,boolq")
    parser.add_argument("--tasks", default="arc_easy,boolq,piqa,hellaswag,winogrande,arc_challenge",
                        help="all tasks; each held-out task's baselines meta-train on the others")
    parser.add_argument("--out", type=Path, default=Path("runs/baselines"))
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()

    rows = []
    for task in args.heldout.split(","):
        train = ",".join(t for t in args.tasks.split(",") if t != task)
        base_run = args.out / task / "eval_base"
        if not (base_run / "results.json").exists():
            degaml("evaluate", "--tasks", task, "--limit", str(args.limit), "--out", str(base_run), "--progress", "false")
        rows.append((task, "base", scores(base_run), None))
        for method in args.methods.split(","):
            out = args.out / task / method
            command, extra = METHODS[method]
            if not out.exists():
                meta = [] if command == "no-meta" else ["--train_tasks", train]
                degaml("baseline", command, "--task", task, "--out", str(out), *meta, *extra, "--progress", "false")
            run = args.out / task / f"eval_{method}"
            if not (run / "results.json").exists():
                degaml("evaluate", "--tasks", task, "--limit", str(args.limit), "--adapter", str(out), "--out", str(run),
                       "--progress", "false")
            info_file = out / ("tts.json" if (out / "tts.json").exists() else "degaml.json")
            rows.append((task, method, scores(run), json.loads(info_file.read_text())))

    print(f"test partition, {args.limit} items per task, log-likelihood protocol, SmolLM2-135M-Instruct\n")
    print("| task | method | acc | acc_norm | train s | peak RSS MB |\n|---|---|---|---|---|---|")
    for task, method, m, info in rows:
        cost = f"{info['seconds']:.0f} | {info['peak_rss_mb']:.0f}" if info else "- | -"
        print(f"| {task} | {method} | {100 * m['acc']:.1f} | {100 * m['acc_norm']:.1f} | {cost} |")


if __name__ == "__main__":
    main()
