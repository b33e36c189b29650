"""Does the generated adapter depend on the task, and does it beat the zero-label floors on held-out tasks?

Every generator here trains on the meta-training tasks only (by default the 20 `extra` tasks: MMLU subject
groups, basic skills, CommonsenseQA, OpenBookQA, SciQ) and is tested on tasks it never saw: the six
in-domain tasks and the out-of-domain targets (leave-all-targets-out, stricter than leave-one-out: no
in-domain task is in any training set). Every method gets the same unlabelled prompts of the target and
no target label:

    base          the base model
    mean          the mean of the training tasks' adapters (what a collapsed generator produces)
    union         one LoRA trained on the union of the training tasks (zero-shot on the target)
    union-matched union continued for as many steps as a generator trained on top of it (see below)
    retrieval     the training tasks' adapters weighted by prompt-embedding similarity
    gen:<mode>    the generator trained with <mode> (objective and options below)
    finetuned     (reference, uses target labels) the last checkpoint of the target's own trajectory

Test partition, log-likelihood protocol, the task's preferred metric (acc_norm for ARC, HellaSwag, PIQA,
OpenBookQA, SciQ; acc otherwise), the first `--limit` items of each task's seeded order, the same items for
every method. Every generated-vs-floor difference is a task-averaged paired bootstrap 95% interval.
Each stage writes its artifacts under --out and is skipped when they exist: a killed run resumes.
`--seeds 0,1` trains every mode's generator with each seed (seed s > 0 reported as gen:<mode>@seed<s>); the
floors are trained once. Scores are cached per `--limit` (under scores/limit-N): the first N items of a
larger limit are the same items, by the seeded order, but each limit is scored afresh (see `score`).

`--protocol loo` runs leave-one-task-out over the in-domain targets (`both`: after the all-targets-out
report; `loo` trains the all-targets-out generators and union LoRA it starts from but scores none of them):
fold T trains on the meta-training tasks plus the five other in-domain tasks and is tested on T. Every
fold's generator and union LoRA continue from the all-targets-out ones (`init_from`, the same `--loo_steps`
optimizer steps for both, so neither gets more budget); the mean adapter and the retrieval library are the
fold's training tasks. Fold T lives under --out/loo/T; base and fine-tuned scores are shared.

The `task-loss-on-union` mode starts its residual base at the all-targets-out union LoRA, so it has had
union's optimizer steps and its own. The `union-matched` floor, built when that mode runs, is union LoRA
continued for the generator's `--task_steps` too (and `--loo_steps` per fold): the same number of optimizer
steps of the same batch size on the same tasks.

    degaml collect --tasks <20 meta-training tasks>,<6 in-domain>,<OOD> --out runs/trajectories \\
        --burn_in_steps 32 --checkpoints 8 --batch_size 4 --lr 1e-3 --max_tokens 128 --dtype bfloat16
    python benchmarks/generator_heldout.py --trajectories runs/trajectories --out runs/heldout
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from safetensors.torch import load_file

from degaml.config import IN_DOMAIN_TASKS, DataConfig, EvalConfig, ModelConfig
from degaml.data import META_TRAINING_TASKS, OUT_OF_DOMAIN_TASKS, get_task
from degaml.data.prompts import task_prompts
from degaml.evaluation.adapted import evaluate_adapted
from degaml.evaluation.metrics import prediction_correctness
from degaml.evaluation.statistics import paired_bootstrap
from degaml.generator.card import GeneratorTrainConfig
from degaml.generator.dataset import average_states
from degaml.generator.encoder import PromptEncoder
from degaml.generator.floors import task_adapters
from degaml.generator.generation import Generator
from degaml.generator.retrieval import retrieval_mixture
from degaml.generator.training import train_on_trajectories
from degaml.generator.trajectories import TrajectoryManifest, load_checkpoint
from degaml.io import atomic_write_json
from degaml.models import load_model, write_adapter
from degaml.models.adapted import ADAPTER_WEIGHTS

FIXES = {"residual": True, "prompt_format": "with_options"}
MODES = {
    # The paper's recipe: reconstruction of checkpoint tokens, its statistics code, bare questions.
    "recon-paper": {"objective": "reconstruction"},
    # Reconstruction with this project's fixes: residual on the mean adapter, log std code, options in the
    # prompts, per-token weights averaged over the training tasks (as the reference does).
    "recon": {"objective": "reconstruction", "token_weighting": "averaged", "stat_code": "log", **FIXES},
    # Function space: the generated adapter's causal-LM loss on labelled examples of the training task. The
    # `relative` statistics code keeps a small token change a small change of lora_B (benchmarks/stat_code.py).
    "task-loss": {"objective": "task_loss", "stat_code": "relative", **FIXES},
    "hybrid": {"objective": "hybrid", "task_loss_weight": 1.0, "token_weighting": "averaged", "stat_code": "relative",
               **FIXES},
    # The task loss on top of union LoRA: the residual base starts at the union adapter of the same training
    # tasks, so a collapsed generator is union LoRA and the prompts only have to add to it.
    "task-loss-on-union": {"objective": "task_loss", "stat_code": "relative", **FIXES},
    # The same, charged for how far the adapter moves the base model's reading of the examples' contexts
    # (KL at context positions, weight 1): the answer loss alone also rewards changes to ordinary text.
    "task-loss-on-union-anchored": {"objective": "task_loss", "stat_code": "relative", "anchor": 1.0, **FIXES},
    # The anchored mode with the choice loss: the gold option must outscore the item's other options, as
    # accuracy asks; the answer loss can also fall by raising every plausible answer.
    # Two items per task and step (every option of each is a row): half the labelled items of the other modes
    # at about twice their rows.
    "choice-on-union-anchored": {"objective": "task_loss", "task_loss_kind": "choice", "task_examples": 2,
                                 "stat_code": "relative", "anchor": 1.0, **FIXES},
}
ON_UNION = {"task-loss-on-union", "task-loss-on-union-anchored", "choice-on-union-anchored"}
"""Modes whose residual base is root/adapters/union; their budget is matched by the `union-matched` floor."""
FLOORS = ("base", "mean", "union", "union-matched", "retrieval")


def trajectory_dirs(root: Path) -> dict[str, Path]:
    """Task -> its first trajectory directory (collection seed 0)."""
    dirs = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        dirs.setdefault(TrajectoryManifest.load(d).task, d)
    return dirs


def train_generators(args, root: Path, holdout: list[str], init_from: Path | None = None) -> None:
    """Every generator (mode and seed) under root/generators; from scratch, or `--loo_steps` more from
    `init_from`."""
    for name, (mode, seed) in args.generators.items():
        if init_from is not None:
            steps, batch = args.loo_steps, args.task_batch if MODES[mode]["objective"] != "reconstruction" \
                else args.batch_size
        elif MODES[mode]["objective"] != "reconstruction":
            steps, batch = args.task_steps, args.task_batch
        else:
            steps, batch = args.recon_steps, args.batch_size
        config = GeneratorTrainConfig(steps=steps, eval_every=steps if init_from else max(steps // 4, 1),
                                      max_prompts=args.max_prompts, batch_size=batch, seed=seed,
                                      init_from=str(init_from / name) if init_from else "",
                                      residual_base=str(root / "adapters" / "union")
                                      if mode in ON_UNION and not init_from else "", **MODES[mode])
        print(f"== generator {name} under {root}: {config.objective}, {steps} steps")
        train_on_trajectories(args.trajectories, root / "generators" / name, holdout, config)  # at once if done


def train_unions(args, lm, dirs: dict[str, Path], train: list[str], target: str, root: Path,
                 init_root: Path | None = None) -> None:
    """root/adapters/union: one LoRA on the union of `train`, `--union_steps` from scratch or `--loo_steps`
    more from init_root's. With an on-union mode also root/adapters/union-matched, which continues union
    for the generator's own `--task_steps` (and then `--loo_steps` per fold): as many optimizer steps on the
    same tasks as union plus the generator on top of it, so the generator gets no larger label budget."""
    from degaml.baselines import BaselineSetup, prepare
    from degaml.baselines.union import UnionConfig, meta_train

    adapters = root / "adapters"
    first = TrajectoryManifest.load(dirs[train[0]])
    plan = [("union", args.loo_steps if init_root else args.union_steps,
             init_root / "adapters" / "union" if init_root else None)]
    if ON_UNION & set(args.modes):
        plan.append(("union-matched", args.loo_steps if init_root else args.task_steps,
                     init_root / "adapters" / "union-matched" if init_root else adapters / "union"))
    job = None
    for name, steps, init in plan:
        if (adapters / name).is_dir():
            continue
        if job is None:
            setup = BaselineSetup(model=first.model, lora=first.lora, meta_examples=args.max_prompts,
                                  batch_size=args.union_batch, max_tokens=128, dtype="auto")
            job = prepare(setup, target, train, needs_meta=True, lm=lm)
        print(f"== {name}: {steps} steps x {args.union_batch} examples over {len(train)} tasks"
              + (f", from {init}" if init else ""))
        started = time.perf_counter()
        state = meta_train(job, UnionConfig(steps=steps, lr=1e-3),
                           init=load_file(str(init / ADAPTER_WEIGHTS)) if init else None)
        write_adapter(state, first.lora, first.model, adapters / name,
                      info={"seconds": time.perf_counter() - started, "init_from": str(init or "")})


def build_adapters(args, dirs: dict[str, Path], train: list[str], targets: list[str], root: Path,
                   shared_own: bool = True) -> dict:
    """The mean, retrieval, generated and (`shared_own`) fine-tuned adapters of every target under
    root/adapters; returns {method: {target: seconds to produce}}."""
    adapters = root / "adapters"
    first = TrajectoryManifest.load(dirs[train[0]])
    model, lora = first.model, first.lora
    seconds: dict[str, dict[str, float]] = {}
    own = task_adapters(args.trajectories, train)
    if not (adapters / "mean").is_dir():
        write_adapter(average_states(list(own.values())), lora, model, adapters / "mean")
    encoder = PromptEncoder.with_default_cache("all-minilm-l6-v2", 64)
    library = {t: (task_prompts(t, "train")[:args.max_prompts], own[t]) for t in train}
    generators = {name: Generator(root / "generators" / name) for name in args.generators}
    for target in targets:
        out = adapters / "retrieval" / target
        if not out.is_dir():
            started = time.perf_counter()
            state, weights = retrieval_mixture(task_prompts(target, "train")[:args.max_prompts], library, encoder,
                                               args.temperature)
            write_adapter(state, lora, model, out, info={"weights": weights, "temperature": args.temperature,
                                                          "seconds": time.perf_counter() - started})
        seconds.setdefault("retrieval", {})[target] = json.loads((out / "degaml.json").read_text())["seconds"]
        for name, gen in generators.items():
            out = adapters / f"gen:{name}" / target
            if not out.is_dir():
                prompts = task_prompts(target, "train", prompt_format=gen.prompt_format)[:args.max_prompts]
                gen.generate(prompts, out, model)
            seconds.setdefault(f"gen:{name}", {})[target] = \
                json.loads((out / "degaml.json").read_text())["generation_seconds"]
        if target in dirs and shared_own:  # the target's own adapter is the same in every fold
            manifest = TrajectoryManifest.load(dirs[target])
            out = adapters / "finetuned" / target
            if not out.is_dir():
                write_adapter(load_checkpoint(manifest.checkpoint_paths(dirs[target])[-1]), lora,
                              model, out)
            seconds.setdefault("finetuned", {})[target] = manifest.train_seconds
    return seconds


FOLD_FREE = ("base", "finetuned")
"""Methods whose adapter does not depend on the training tasks: scored once, under --out."""


def adapter_of(root: Path, method: str, target: str) -> Path | None:
    if method == "base":
        return None
    shared = root / "adapters" / method
    return shared if method in ("mean", "union", "union-matched") else shared / target


def score(args, lm, methods: list[str], targets: list[str], root: Path) -> dict[str, dict[str, list[float]]]:
    """{method: {target: per-item correctness under the task's preferred metric}}, cached per (limit, method,
    target). Each limit is scored afresh: in bf16 an item's score can depend on the batch it is padded
    into, so the first 200 items of a 500-item run are not always scored as a 200-item run scores them."""
    correct: dict[str, dict[str, list[float]]] = {}
    for target in targets:
        metric = get_task(target).preferred_metric
        data = DataConfig(tasks=[target], split="test", limit=args.limit)
        for method in methods:
            where = args.out if method in FOLD_FREE else root
            path = where / "scores" / f"limit-{args.limit}" / method / f"{target}.json"
            adapter = adapter_of(where, method, target)
            if adapter is not None and not adapter.is_dir():
                continue  # e.g. no own trajectory for a fine-tuned reference
            if not path.is_file():
                started = time.perf_counter()
                (result,), _ = evaluate_adapted(lm, adapter, data, EvalConfig(), progress=False)
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(path, {"metric": metric, "correct": prediction_correctness(result.predictions, metric),
                                         "ids": [p["id"] for p in result.predictions],
                                         "seconds": time.perf_counter() - started})
                print(f"  scored {method:>16} on {target:<32} {result.metrics[metric] * 100:5.1f}")
            correct.setdefault(method, {})[target] = json.loads(path.read_text())["correct"]
    return correct


def diagnostics(args, root: Path) -> dict[str, dict[str, float]]:
    found = {}
    for name in args.generators:
        log = root / "generators" / name / "log.jsonl"
        last = json.loads(log.read_text().splitlines()[-1])
        found[name] = {k: v for k, v in last.items() if k.startswith(("heldout/", "train/variance", "train/centroid"))
                       and k.endswith(("variance_ratio", "centroid_accuracy", "cosine_to_own", "cosine_to_mean",
                                       "delta_norm"))}
    return found


def describe(values: dict[str, float]) -> str:
    """One line of a generator's task-dependence diagnostics."""
    summary = {k: round(v, 4) for k, v in values.items() if k.count("/") == 1}
    own = [v for k, v in values.items() if k.endswith("cosine_to_own")]
    mean = [v for k, v in values.items() if k.startswith("heldout/") and k.endswith("cosine_to_mean")]
    return (f"{summary}; held-out mean cosine to own adapter {sum(own) / max(len(own), 1):.3f}, "
            f"to the mean adapter {sum(mean) / max(len(mean), 1):.3f}")


def report(args, correct, seconds, targets_by_suite: dict[str, list[str]], header: str,
           diagnostic_lines: list[str]) -> str:
    lines = [f"{header}: {args.limit} test items per task (all when fewer), log-likelihood, preferred metric; "
             f"generator seeds {args.seeds} (gen:M@seed<s>), one seed of everything else.", ""]
    methods = [m for m in correct if m != "finetuned"] + (["finetuned"] if "finetuned" in correct else [])
    floors = [f for f in FLOORS if f in correct]
    for suite, targets in targets_by_suite.items():
        targets = [t for t in targets if all(t in correct[m] for m in methods if m != "finetuned")]
        if not targets:
            continue
        lines += [f"### {suite} ({len(targets)} tasks, {sum(len(correct['base'][t]) for t in targets)} items)", "",
                  "| method | " + " | ".join(targets) + " | average |", "|---" * (len(targets) + 2) + "|"]
        for m in [m for m in methods if any(t in correct[m] for t in targets)]:
            cells = [f"{100 * sum(correct[m][t]) / len(correct[m][t]):.1f}" if t in correct[m] else "-" for t in targets]
            have = [t for t in targets if t in correct[m]]
            avg = sum(100 * sum(correct[m][t]) / len(correct[m][t]) for t in have) / len(have) if have else float("nan")
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {avg:.1f} |")
        versus_base = {m: {t: paired_bootstrap({t: correct[m][t]}, {t: correct["base"][t]})
                           for t in targets if t in correct[m]} for m in methods if m != "base"}
        lines += ["", "Generated minus floor, task-averaged paired bootstrap 95% interval (points):", "",
                  "| mode | " + " | ".join(f"vs {f}" for f in floors) + " | tasks above base (point / interval > 0) |",
                  "|---" * (len(floors) + 2) + "|"]
        for m in [m for m in methods if m.startswith("gen:")] + [f for f in reversed(floors) if f != "base"]:
            cells = []
            for floor in floors:
                if floor == m:
                    cells.append("-")
                    continue
                d = paired_bootstrap({t: correct[m][t] for t in targets}, {t: correct[floor][t] for t in targets})
                cells.append(f"{d} {d.verdict}")
            per_task = versus_base[m].values()
            above = f"{sum(d.difference > 0 for d in per_task)} / {sum(d.low > 0 for d in per_task)} of {len(targets)}"
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {above} |")
        # Per task, with the fine-tuned reference: whether even the target's own labels move a task past the base.
        lines += ["", "Each method minus the base model, per task, paired bootstrap 95% interval (points):", "",
                  "| method | " + " | ".join(targets) + " |", "|---" * (len(targets) + 1) + "|"]
        for m, by_target in versus_base.items():
            lines.append(f"| {m} | " + " | ".join(f"{by_target[t]} {by_target[t].verdict}" if t in by_target
                                                   else "-" for t in targets) + " |")
        lines.append("")
    lines += ["### Seconds to an adapter (median over targets)", ""]
    for method, by_target in seconds.items():
        values = sorted(by_target.values())
        lines.append(f"- {method}: {values[len(values) // 2]:.2f} s")
    lines += ["", "### Task-dependence diagnostics (last training evaluation)", ""] + diagnostic_lines
    return "\n".join(lines) + "\n"


def leave_one_out(args, lm, dirs: dict[str, Path], targets: list[str]) -> str:
    """Fold T: the meta-training tasks plus the other in-domain tasks; generator and union continue from the
    all-targets-out ones for --loo_steps steps. Returns the report."""
    correct: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, dict[str, float]] = {}
    notes = []
    methods = list(FLOORS) + [f"gen:{name}" for name in args.generators] + ["finetuned"]
    for target in [t for t in targets if t in IN_DOMAIN_TASKS]:
        root = args.out / "loo" / target
        train = args.train + [t for t in IN_DOMAIN_TASKS if t != target and t in dirs]
        print(f"=== fold {target}: {len(train)} training tasks")
        train_unions(args, lm, dirs, train, target, root, init_root=args.out)
        train_generators(args, root, [t for t in dirs if t not in train], init_from=args.out / "generators")
        for method, by_target in build_adapters(args, dirs, train, [target], root, shared_own=False).items():
            seconds.setdefault(method, {}).update(by_target)
        for method, by_target in score(args, lm, methods, [target], root).items():
            correct.setdefault(method, {}).update(by_target)
        for mode, values in diagnostics(args, root).items():
            notes.append(f"- fold {target}, {mode}: {describe(values)}")
    header = (f"Leave-one-task-out over the in-domain tasks: fold T trains on the {len(args.train)} meta-training "
              f"tasks and the other in-domain tasks; generator and union LoRA continue from the all-targets-out "
              f"ones for {args.loo_steps} more steps each")
    return report(args, correct, seconds, {"in-domain, leave-one-out": list(correct["base"])}, header, notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=Path, default=Path("runs/trajectories"))
    parser.add_argument("--out", type=Path, default=Path("runs/heldout"))
    parser.add_argument("--train", default=",".join(META_TRAINING_TASKS))
    parser.add_argument("--targets", default=",".join(IN_DOMAIN_TASKS + OUT_OF_DOMAIN_TASKS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seeds", default="0", help="generator training seeds; seed s > 0 of mode M is "
                                                     "gen:M@seed<s> (the floors do not depend on it)")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--max_prompts", type=int, default=256)
    parser.add_argument("--recon_steps", type=int, default=600)
    parser.add_argument("--batch_size", type=int, default=8, help="reconstruction samples per step")
    parser.add_argument("--task_steps", type=int, default=300)
    parser.add_argument("--task_batch", type=int, default=2, help="tasks per step (task_loss, hybrid)")
    parser.add_argument("--union_steps", type=int, default=300)
    parser.add_argument("--union_batch", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--stage", choices=("all", "generators"), default="all")
    parser.add_argument("--protocol", choices=("all-out", "loo", "both"), default="all-out",
                        help="loo: leave-one-task-out over the in-domain targets (see above), scoring nothing of "
                             "the all-targets-out stage it starts from; both: the all-targets-out report, then loo")
    parser.add_argument("--loo_steps", type=int, default=100, help="generator and union steps per fold (loo)")
    args = parser.parse_args()
    args.train = [t for t in args.train.split(",") if t]
    args.modes = [m for m in args.modes.split(",") if m]
    unknown = set(args.modes) - MODES.keys()
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; known: {', '.join(MODES)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if not seeds:
        parser.error("--seeds names no seed")
    args.generators = {mode if seed == 0 else f"{mode}@seed{seed}": (mode, seed) for mode in args.modes for seed in seeds}
    targets = [t for t in args.targets.split(",") if t]
    if set(args.train) & set(targets):
        parser.error(f"targets {sorted(set(args.train) & set(targets))} are also training tasks")
    dirs = trajectory_dirs(args.trajectories)
    missing = [t for t in args.train if t not in dirs]
    if missing:
        parser.error(f"no trajectory for training tasks {missing} under {args.trajectories}")
    args.out.mkdir(parents=True, exist_ok=True)
    lm = load_model(ModelConfig(name=TrajectoryManifest.load(dirs[args.train[0]]).model))
    train_unions(args, lm, dirs, args.train, targets[0], args.out)
    train_generators(args, args.out, [t for t in dirs if t not in args.train])
    if args.stage == "generators":
        return
    seconds = build_adapters(args, dirs, args.train, targets, args.out)
    if args.protocol != "loo":
        methods = list(FLOORS) + [f"gen:{name}" for name in args.generators] + ["finetuned"]
        correct = score(args, lm, methods, targets, args.out)
        suites = {"in-domain": [t for t in targets if t in IN_DOMAIN_TASKS],
                  "out-of-domain": [t for t in targets if t in OUT_OF_DOMAIN_TASKS]}
        header = (f"Held-out generalization, all targets out: generators trained on the {len(args.train)} "
                  "meta-training tasks, none of the targets")
        text = report(args, correct, seconds, suites, header,
                      [f"- {mode}: {describe(values)}" for mode, values in diagnostics(args, args.out).items()])
        (args.out / "results.md").write_text(text)
        atomic_write_json(args.out / "summary.json", {"args": {k: str(v) for k, v in vars(args).items()},
                                                      "seconds": seconds, "diagnostics": diagnostics(args, args.out)})
        print(text)
    if args.protocol != "all-out":
        text = leave_one_out(args, lm, dirs, targets)
        (args.out / "results_loo.md").write_text(text)
        print(text)

if __name__ == "__main__":
    main()
