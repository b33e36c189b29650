"""The swap ceiling of docs/results.md: each in-domain target scored under its own fine-tuned adapter, the next
target's (the `swapped` control's pairing), union LoRA and the base model, with paired bootstrap intervals.

    python scripts/swap_ceiling.py DIR

reads `degaml evaluate` output directories under DIR, named `<target>-<what>` for what in own, partner, union
and base, each made by

    degaml evaluate [--adapter ADAPTER] --data.tasks <target> --data.split validation --data.limit 150 \\
        --data.partition.seed 1 --data.partition.source offline --out DIR/<target>-<what>

and prints each target's accuracy (its preferred metric) and the paired differences over six and five
(without BoolQ) targets.

    python scripts/swap_ceiling.py adapters TRAJECTORIES OUT FIRST LAST

writes, for every task trajectory under TRAJECTORIES (`degaml collect --out`), the mean of its checkpoints
FIRST..LAST (1-based, inclusive) as a PEFT adapter `OUT/<task>`: the own adapters of a collection longer than
the run's (e.g. `degaml collect --collect.burn_in_steps 26 --collect.checkpoints 34 --collect.start <union LoRA>`
gives the 30-step adapter as checkpoints 1..4 and the 60-step one as 31..34).
"""

from __future__ import annotations

import sys
from pathlib import Path

from degaml.config import IN_DOMAIN_TASKS
from degaml.data.tasks import TASKS
from degaml.evaluation.harness import read_results
from degaml.evaluation.statistics import paired_bootstrap
from degaml.generator.dataset import average_states
from degaml.generator.trajectories import TrajectoryManifest, load_checkpoint
from degaml.models.adapted_output import write_adapter

KINDS = ("base", "union", "own", "partner")


def correct(directory: Path, task: str) -> dict[str, float]:
    (result,) = read_results(directory / "results.json")
    return result.correctness(TASKS[task].preferred_metric)


def ceiling(root: Path) -> None:
    rows: dict[str, dict[str, list[float]]] = {kind: {} for kind in KINDS}
    for task in IN_DOMAIN_TASKS:
        scored = {kind: correct(root / f"{task}-{kind}", task) for kind in KINDS}
        ids = sorted(scored["own"])
        for kind, items in scored.items():
            if sorted(items) != ids:
                raise ValueError(f"{root / f'{task}-{kind}'}: other items than {root / f'{task}-own'}")
            rows[kind][task] = [items[i] for i in ids]
        accuracies = " | ".join(f"{100 * sum(rows[k][task]) / len(ids):.1f}" for k in KINDS)
        print(f"| {task} | {len(ids)} | {accuracies} | {paired_bootstrap({task: rows['own'][task]}, {task: rows['partner'][task]})} |")
    for name, tasks in (("six tasks", IN_DOMAIN_TASKS), ("five without BoolQ", [t for t in IN_DOMAIN_TASKS if t != "boolq"])):
        pick = {kind: {t: rows[kind][t] for t in tasks} for kind in KINDS}
        print(f"{name}: own - partner {paired_bootstrap(pick['own'], pick['partner'])}; own - union "
              f"{paired_bootstrap(pick['own'], pick['union'])}; union - base {paired_bootstrap(pick['union'], pick['base'])}")


def adapters(trajectories: Path, out: Path, first: int, last: int) -> None:
    for directory in sorted(p for p in trajectories.iterdir() if p.is_dir()):
        manifest = TrajectoryManifest.load(directory)
        paths = manifest.checkpoint_paths(directory)
        if not 1 <= first <= last <= len(paths):
            raise ValueError(f"{directory}: {len(paths)} checkpoints, no checkpoints {first}..{last}")
        picked = paths[first - 1:last]
        write_adapter(average_states([load_checkpoint(p) for p in picked]), manifest.lora, manifest.model,
                      out / manifest.task, info={"checkpoints": [p.name for p in picked]})
        print(f"{out / manifest.task}: mean of {', '.join(p.name for p in picked)}")


if __name__ == "__main__":
    if len(sys.argv) == 2:
        ceiling(Path(sys.argv[1]))
    elif len(sys.argv) == 6 and sys.argv[1] == "adapters":
        adapters(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
