"""Write a task pool: every meta-training task registered on this machine (MMLU's 57 subjects, CommonsenseQA,
OpenBookQA, SciQ, three basic-skills tasks, GLUE SST-2 and MRPC, SuperGLUE CB, LAB-Bench DbQA, Qasper yes/no;
BIG-bench's JSON tasks too once `degaml prepare-data` has run), split by a seeded draw into policy-reward tasks
(`--rewards` of those with at least `--reward_items` labelled items, so that their validation partition holds
a tenth of that or more) and generator-training tasks (the rest, in a seeded shuffled order, so that the first K
of them, the scaling curve's, are a mix of sources). The MMLU subject groups are left out: they hold the same
questions as the subjects.

    python scripts/pool_config.py > configs/tasks/pool.yaml  (the pinned packages alone; then restore the header)
    python scripts/pool_config.py --rewards 50 --reward_items 640 > configs/tasks/pool-bigbench.yaml  (with BIG-bench)
"""

from __future__ import annotations

import argparse
import random

import yaml

from degaml.data.tasks import MMLU_GROUPS, TASKS, load_task


def pool() -> list[str]:
    groups = {f"mmlu_{g}" for g in MMLU_GROUPS}
    return [name for name, task in TASKS.items() if task.domain == "extra" and name not in groups]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rewards", type=int, default=20)
    parser.add_argument("--reward_items", type=int, default=250)
    args = parser.parse_args()
    tasks = pool()
    sizes = {name: len(load_task(name)) for name in tasks}
    rng = random.Random(args.seed)
    eligible = sorted(t for t in tasks if sizes[t] >= args.reward_items)
    rewards = sorted(rng.sample(eligible, min(args.rewards, len(eligible))))
    training = [t for t in tasks if t not in rewards]
    rng.shuffle(training)
    print(yaml.safe_dump({"meta_training": training, "reward": rewards}, width=110, sort_keys=False), end="")
    print(f"# {len(training)} generator-training tasks, {len(rewards)} reward tasks (of {len(eligible)} with >= "
          f"{args.reward_items} items), from {len(tasks)}; seed {args.seed}")


if __name__ == "__main__":
    main()
