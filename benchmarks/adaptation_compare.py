"""Judge the adaptation policy on held-out tasks against each family alone and the validation oracle.

For each held-out task T (its generator never saw T; its policy was trained on other tasks):
1. every action of the default space is applied to T's generated adapter and scored on T's *validation*
   partition;
2. each family keeps its best validation setting; the validation oracle is the best action overall;
   the policy picks an action from T's label-free state;
3. those choices are scored once on T's *test* partition.
Prints, per task and on average, test accuracy and wall time, and whether the policy beats the best
single family.

    degaml train-policy --generator runs/gen/loo/arc_easy/generator --tasks arc_challenge,hellaswag,piqa,winogrande \\
        --out runs/gen/policy/arc_easy
    python benchmarks/adaptation_compare.py --heldout arc_easy,boolq
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from degaml.adaptation.actions import default_actions
from degaml.adaptation.apply import FAMILIES
from degaml.adaptation.policy import load_policy
from degaml.adaptation.rewards import measure_actions
from degaml.adaptation.task_setup import adaptation_context, task_features
from degaml.config import DataConfig, EvalConfig, ModelConfig
from degaml.data import TASKS
from degaml.data.prompts import load_partitioned, task_items
from degaml.generator.generation import Generator
from degaml.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", default="arc_easy,boolq")
    parser.add_argument("--generators", type=Path, default=Path("runs/gen/loo"), help="<dir>/<task>/generator")
    parser.add_argument("--policies", type=Path, default=Path("runs/gen/policy"), help="<dir>/<task>")
    parser.add_argument("--policy", type=Path, default=None,
                        help="one policy for every held-out task (trained on tasks that are none of them)")
    parser.add_argument("--out", type=Path, default=Path("runs/gen/compare"))
    parser.add_argument("--validation_limit", type=int, default=50)
    parser.add_argument("--test_limit", type=int, default=200)
    parser.add_argument("--adaptation_prompts", type=int, default=32)
    args = parser.parse_args()

    actions = default_actions()
    summary: dict[str, dict[str, dict]] = {}
    for task in args.heldout.split(","):
        gen = Generator(args.generators / task / "generator")
        lm = load_model(ModelConfig(name=gen.card.model, dtype="float32", device="cpu"))
        ctx = adaptation_context(gen, lm, task, task_items(task, "train")[:args.adaptation_prompts])
        metric = TASKS[task].preferred_metric
        validation = DataConfig(tasks=[task], split="validation", limit=args.validation_limit)
        val = measure_actions(ctx, task, actions, validation, EvalConfig(), args.out / task,
                              load_partitioned(validation), metric, progress=False)
        chosen = {}
        for family in FAMILIES:  # max() keeps the first of ties: the cheaper, earlier grid point
            chosen[f"{family} (best on validation)"] = max((a for a in actions if a.family == family),
                                                          key=lambda a: val[a.label]["score"])
        chosen["validation oracle"] = max(actions, key=lambda a: val[a.label]["score"])
        policy = load_policy(args.policy or args.policies / task)
        chosen["policy"] = policy.choose(task_features(gen, ctx).vector())
        test = DataConfig(tasks=[task], split="test", limit=args.test_limit)
        picked = list({a.label: a for a in chosen.values()}.values())
        scores = measure_actions(ctx, task, picked, test, EvalConfig(), args.out / task, load_partitioned(test),
                                 metric, progress=False)
        summary[task] = {name: {**scores[a.label], "validation": val[a.label]["score"]}
                         for name, a in chosen.items()}

    lines = [f"| method | {' | '.join(summary)} | average | adapt s (mean) | test eval s (mean) |",
             "|---|" + "---|" * (len(summary) + 3)]
    methods = list(next(iter(summary.values())))
    averages = {}
    for method in methods:
        cells = []
        for rows in summary.values():
            r = rows[method]
            cells.append(f"{100 * r['score']:.1f} ({r['action_label']}; val {100 * r['validation']:.1f})")
        averages[method] = sum(rows[method]["score"] for rows in summary.values()) / len(summary)
        adapt = sum(rows[method]["adapt_seconds"] for rows in summary.values()) / len(summary)
        evaluate = sum(rows[method]["eval_seconds"] for rows in summary.values()) / len(summary)
        lines.append(f"| {method} | {' | '.join(cells)} | {100 * averages[method]:.1f} | {adapt:.1f} | {evaluate:.0f} |")
    print(f"test score (each task's preferred metric), limit {args.test_limit}; validation limit "
          f"{args.validation_limit}\n")
    print("\n".join(lines))
    singles = {m: v for m, v in averages.items() if m.endswith("(best on validation)") and not m.startswith("none")}
    best = max(singles, key=singles.get)
    verdict = "beats" if averages["policy"] > singles[best] else "does not beat"
    print(f"\npolicy average {100 * averages['policy']:.1f} {verdict} the best single family "
          f"({best}: {100 * singles[best]:.1f})")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
