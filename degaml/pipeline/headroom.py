"""The headroom table: on each task, how far its own fine-tuned LoRA is above union LoRA (and base), measured
before any generator is scored, so that held-out targets are chosen where a zero-label generator has room
to help.

One union LoRA of every listed task (each target among its tasks, so a task's headroom h = own - union is a
conservative figure for a verdict whose union leaves it out), one own LoRA per task (`own_steps` on its train
partition), and base, union and own scored on the same validation items, with paired bootstrap intervals.
Every task is resumable; parts (`--part 1/3`) run in separate sessions fill one directory, and the table is
rebuilt from the per-item predictions alone (`degaml report DIR`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import LoraSettings, ModelConfig, PartitionConfig, dump_yaml, from_dict, task_names
from ..evaluation.statistics import PairedDifference

SETTINGS_FILE = "headroom.yaml"
"""A headroom directory's resolved settings (what `degaml report` recognises it by)."""
TABLE_FILE = "headroom.md"
SUMMARY_FILE = "headroom.json"
METHODS = ("base", "union", "own")
UNION_ADAPTER = "union-adapter"
UNION_HASH_FILE = "union-adapter.sha256"
"""In a published table: the sha256 of the union LoRA its parts were scored with."""


@dataclass
class HeadroomBudget:
    own_steps: int = 60
    """Optimizer steps of each task's own LoRA on its train partition (x batch_size examples, cycled where the
    partition is smaller)."""
    union_steps: int = 200
    """Optimizer steps of the one union LoRA, tasks balanced."""
    meta_examples: int = 64
    """Train examples per task that union LoRA draws from."""
    lr: float = 1e-3
    batch_size: int = 4
    max_tokens: int = 128
    """Training examples are left-truncated to this many tokens."""

    def __post_init__(self) -> None:
        for name in ("own_steps", "union_steps", "meta_examples", "batch_size", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"budget.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"budget.lr must be > 0, got {self.lr}")


@dataclass
class HeadroomSettings:
    tasks: list[str]
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    partition: PartitionConfig = field(default_factory=lambda: PartitionConfig(seed=7, validation_fraction=0.2))
    items: int = 100
    budget: HeadroomBudget = field(default_factory=HeadroomBudget)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("tasks: name at least one task")
        if self.items < 1:
            raise ValueError(f"items must be >= 1, got {self.items}")


def headroom(tasks: list[str] | str, out: Path = Path("runs/headroom"), model: ModelConfig | None = None,
             lora: LoraSettings | None = None, partition: PartitionConfig | None = None, items: int = 100,
             budget: HeadroomBudget | None = None, seed: int = 0, part: str | None = None,
             published: Path | None = None, progress: bool = True) -> None:
    """Measure each task's headroom: its own fine-tuned LoRA minus union LoRA, on validation items.

    Where a zero-label generator can help at all: a task whose own LoRA does not beat union LoRA of the pool
    leaves a generator nothing to recover. Writes per-item predictions of base, union and own for every task and
    the table (`headroom.md`); resumes per task.

    Args:
        tasks: Tasks (comma-separated names, or a list in a config).
        out: Output directory (resumable; parts fill the same one).
        model: Base model.
        lora: LoRA rank, alpha and targets.
        partition: The partition whose validation items are scored (default seed 7, validation 0.2: a seed no
            verdict's selection reads; a verdict on the chosen targets scores this seed's test items).
        items: Validation items per task (fewer where the partition has fewer).
        budget: Steps, examples and learning rate of the own and union LoRAs.
        seed: Training seed.
        part: `K/N`: only the K-th of N interleaved parts of the tasks (union LoRA is shared by all parts).
        published: A published table of these settings (`degaml publish`'s folder, such as results/headroom):
            the tasks it scored are taken from it instead of measured again, and a union LoRA trained here is
            checked against the sha256 it records.
        progress: Show progress bars.
    """
    from ..data.tasks import check_task_names
    from ..io import claim_directory, exclusive_directory

    settings = HeadroomSettings(task_names(tasks), model or ModelConfig(), lora or LoraSettings(),
                                partition or PartitionConfig(seed=7, validation_fraction=0.2), items,
                                budget or HeadroomBudget(), seed)
    check_task_names(settings.tasks)
    chosen = _part(settings.tasks, part)
    if published is not None:
        _check_published(Path(published), settings)
    out = claim_directory(out, (SETTINGS_FILE, ".lock"))
    with exclusive_directory(out):
        _check_settings(out, settings)
        if published is not None:
            _take_published(Path(published), out, settings)
        _measure(out, settings, chosen, progress)
        if published is not None:
            _compare_union(Path(published), out)
        table = write_table(out)
    print(table)


def _part(tasks: list[str], part: str | None) -> list[str]:
    if part is None:
        return tasks
    try:
        k, n = (int(x) for x in part.split("/"))
    except ValueError:
        raise ValueError(f"--part {part!r}: expected K/N, such as 1/3") from None
    if not 1 <= k <= n:
        raise ValueError(f"--part {part!r}: K must be between 1 and N")
    return tasks[k - 1::n]


def _check_settings(out: Path, settings: HeadroomSettings) -> None:
    from ..config import to_dict
    from ..io import atomic_write_text

    path = out / SETTINGS_FILE
    if path.is_file():
        saved = load_settings(out)
        if to_dict(saved) != to_dict(settings):
            changed = [k for k in vars(settings) if to_dict(getattr(saved, k)) != to_dict(getattr(settings, k))]
            raise ValueError(f"{out} holds a headroom table made with other settings ({', '.join(changed)} differ from "
                             f"its {SETTINGS_FILE}); choose another --out")
        return
    atomic_write_text(path, dump_yaml(asdict(settings)))


def _check_published(published: Path, settings: HeadroomSettings) -> None:
    from ..config import to_dict

    if not (published / SETTINGS_FILE).is_file():
        raise FileNotFoundError(f"--published {published}: not a published headroom table (no {SETTINGS_FILE})")
    if to_dict(load_settings(published)) != to_dict(settings):
        raise ValueError(f"--published {published}: its {SETTINGS_FILE} differs from these settings; its tasks "
                         "were measured otherwise")


def _take_published(published: Path, out: Path, settings: HeadroomSettings) -> None:
    """Copy the tasks `published` scored in full (all three methods) into `out`, where `out` lacks them."""
    from ..data import task_label
    from ..io import atomic_write_text

    taken = []
    for label in map(task_label, settings.tasks):
        sources = {m: result_path(published, label, m) for m in METHODS}
        if all(p.is_file() for p in sources.values()) and not all(result_path(out, label, m).is_file()
                                                                   for m in METHODS):
            for method, source in sources.items():
                atomic_write_text(result_path(out, label, method), source.read_text(encoding="utf-8"))
            taken.append(label)
    print(f"[headroom] took {len(taken)} scored task(s) from {published}", flush=True)


def _compare_union(published: Path, out: Path) -> None:
    """Say whether a union LoRA trained here is the one `published`'s tasks were scored with."""
    import hashlib

    recorded, union = published / UNION_HASH_FILE, out / UNION_ADAPTER / "adapter_model.safetensors"
    if not (recorded.is_file() and union.is_file()):
        return
    digest = hashlib.sha256(union.read_bytes()).hexdigest()
    expected = recorded.read_text(encoding="utf-8").split()[0]
    if digest != expected:
        print(f"[headroom] warning: the union LoRA trained here (sha256 {digest[:12]}) is not the one {published}'s "
              f"tasks were scored with ({expected[:12]}): the table mixes two union LoRAs", flush=True)


def load_settings(directory: Path) -> HeadroomSettings:
    import yaml

    path = Path(directory) / SETTINGS_FILE
    return from_dict(HeadroomSettings, yaml.safe_load(path.read_text(encoding="utf-8")) or {}, str(path))


def result_path(out: Path, task: str, method: str) -> Path:
    return out / "tasks" / task / method / "results.json"


def _measure(out: Path, settings: HeadroomSettings, tasks: list[str], progress: bool) -> None:
    from ..baselines import BaselineSetup
    from ..config import DataConfig, EvalConfig
    from ..data import task_label
    from ..data.prompts import load_partitioned
    from ..models import load_model

    pending = [t for t in tasks if not all(result_path(out, task_label(t), m).is_file() for m in METHODS)]
    if not pending:
        return
    b = settings.budget
    lm = load_model(settings.model)
    setup = BaselineSetup(model=settings.model, lora=settings.lora, support=1, steps=b.own_steps, lr=b.lr,
                          batch_size=b.batch_size, meta_examples=b.meta_examples, max_tokens=b.max_tokens,
                          seed=settings.seed, partition=settings.partition)
    union = _union_adapter(out, settings, setup, lm, progress)
    config = EvalConfig()
    for task in pending:
        label = task_label(task)
        data = DataConfig(tasks=[task], split="validation", limit=settings.items, partition=settings.partition)
        loaded = load_partitioned(data)
        own = _own_adapter(out, task, setup, lm)
        for method, adapter in zip(METHODS, (None, union, own)):
            if not result_path(out, label, method).is_file():
                _score(out, settings, lm, label, method, adapter, data, config, loaded, progress)
        if progress:
            print(f"[headroom] {label}: scored", flush=True)


def _union_adapter(out: Path, settings: HeadroomSettings, setup, lm, progress: bool) -> Path:
    """One union LoRA of every listed task, tasks balanced (the union baseline's meta-training)."""
    from ..baselines.common import BaselineJob, load_examples
    from ..baselines.common import write_result as write_baseline
    from ..baselines.union import UnionConfig, meta_train
    from ..data import task_label

    path = out / UNION_ADAPTER
    if (path / "adapter_model.safetensors").is_file():
        return path
    started = time.perf_counter()
    meta = {task_label(t): load_examples(lm, t, setup, setup.meta_examples) for t in settings.tasks}
    job = BaselineJob(setup, "pool", list(meta), lm, [], meta)
    config = UnionConfig(steps=settings.budget.union_steps, lr=settings.budget.lr)
    write_baseline(job, "union", config, meta_train(job, config, progress), path, started, {"support_examples": 0})
    return path


def _own_adapter(out: Path, task: str, setup, lm) -> Path:
    """The task's own LoRA: no-meta LoRA's fine-tuning, `own_steps` steps on up to own_steps x batch_size
    examples of its train partition (cycled where it has fewer)."""
    from ..baselines.common import BaselineJob, finish_by_fine_tuning, load_examples
    from ..data import task_label

    path = out / "adapters" / task_label(task)
    if (path / "adapter_model.safetensors").is_file():
        return path
    started = time.perf_counter()
    examples = load_examples(lm, task, setup, setup.steps * setup.batch_size)
    finish_by_fine_tuning(BaselineJob(setup, task_label(task), [], lm, examples, {}), "own", None, None, path, started)
    return path


def _score(out, settings, lm, label, method, adapter, data, config, loaded, progress) -> None:
    from ..evaluation.harness import write_evaluation
    from ..evaluation.output_scoring import evaluate_adapted

    results, partitions = evaluate_adapted(lm, adapter, data, config, progress=progress, loaded=loaded)
    header = (f"model: {settings.model.name} ({lm.precision.dtype}) | method: {method} | split: validation | "
              f"limit: {settings.items} | partition seed: {settings.partition.seed}")
    record = {"method": method, "target": label, "data": data, "eval": config,
              "adapter": None if adapter is None else str(adapter.relative_to(out))}
    write_evaluation(result_path(out, label, method).parent, results, partitions, record, header, settings.seed, lm)


@dataclass(frozen=True)
class HeadroomRow:
    task: str
    items: int
    accuracy: dict[str, float]
    """{method: accuracy in points}."""
    headroom: PairedDifference
    """own - union, a PairedDifference."""
    over_base: PairedDifference
    """own - base."""


def table_rows(directory: Path) -> tuple[list[HeadroomRow], list[str]]:
    """One row per task with all three methods scored, by headroom, largest first; and the tasks not yet
    scored."""
    from ..data import task_label
    from ..evaluation.harness import read_results
    from ..evaluation.statistics import paired_bootstrap

    settings = load_settings(directory)
    rows, missing = [], []
    for label in map(task_label, settings.tasks):
        paths = {m: result_path(directory, label, m) for m in METHODS}
        if not all(p.is_file() for p in paths.values()):
            missing.append(label)
            continue
        correct = {}
        for method, path in paths.items():
            (result,) = read_results(path)
            by_id = result.correctness("acc")
            correct[method] = {label: [by_id[i] for i in sorted(by_id)]}
        if not correct["base"][label]:
            raise ValueError(f"{paths['base']}: no items scored")
        rows.append(HeadroomRow(label, len(correct["base"][label]),
                                {m: 100 * sum(c[label]) / len(c[label]) for m, c in correct.items()},
                                paired_bootstrap(correct["own"], correct["union"]),
                                paired_bootstrap(correct["own"], correct["base"])))
    return sorted(rows, key=lambda r: -r.headroom.difference), missing


def write_table(directory: Path, threshold: float = 5.0) -> str:
    """headroom.md and headroom.json from the per-item predictions; returns the table's text."""
    from ..io import atomic_write_json, atomic_write_text

    rows, missing = table_rows(directory)
    settings = load_settings(directory)
    b = settings.budget
    lines = [f"# Headroom: own LoRA minus union LoRA, {settings.model.name}",
             "",
             f"Validation items of partition seed {settings.partition.seed} (validation fraction "
             f"{settings.partition.validation_fraction}), up to {settings.items} a task. Own LoRA: {b.own_steps} steps "
             f"x {b.batch_size} train examples of the task; union LoRA: {b.union_steps} steps x {b.batch_size} over "
             f"the {len(settings.tasks)} tasks ({b.meta_examples} train examples each, the task among them). "
             "Paired bootstrap 95% intervals over items; h = own - union.",
             "",
             "| task | items | base | union | own | h = own - union | own - base |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.task} | {r.items} | {r.accuracy['base']:.1f} | {r.accuracy['union']:.1f} | {r.accuracy['own']:.1f} "
              f"| {r.headroom} | {r.over_base} |" for r in rows]
    room = [r.task for r in rows if r.headroom.difference >= threshold]
    sure = [r.task for r in rows if r.headroom.low > 0]
    lines += ["", f"{len(room)} of {len(rows)} tasks have h >= {threshold:g} points: {', '.join(room) or 'none'}.",
              f"{len(sure)} have h with its interval above zero: {', '.join(sure) or 'none'}."]
    if missing:
        lines.append(f"Not yet scored ({len(missing)}): {', '.join(missing)}.")
    text = "\n".join(lines) + "\n"
    atomic_write_text(directory / TABLE_FILE, text)
    atomic_write_json(directory / SUMMARY_FILE, {
        "threshold": threshold, "with_headroom": room, "interval_above_zero": sure, "missing": missing,
        "rows": [{"task": r.task, "items": r.items, "accuracy": r.accuracy, "headroom": asdict(r.headroom),
                  "own_minus_base": asdict(r.over_base)} for r in rows]})
    return text


def publish_headroom(directory: Path, out: Path, compact) -> None:
    """The settings, every per-item results.json (`compact`ed) and the table, into `out` (merged with what it
    holds: parts published one by one); not the adapters."""
    import hashlib

    from ..io import atomic_write_text

    if (out / SETTINGS_FILE).is_file() and load_settings(out) != load_settings(directory):
        raise ValueError(f"{out} holds a headroom table made with other settings; publish into another folder")
    files = sorted(directory.glob("tasks/*/*/results.json"))
    if not files:
        raise FileNotFoundError(f"{directory}: no task scored yet")
    atomic_write_text(out / SETTINGS_FILE, (directory / SETTINGS_FILE).read_text(encoding="utf-8"))
    union = directory / UNION_ADAPTER / "adapter_model.safetensors"
    if union.is_file():  # a part measured on another machine must have trained this very union LoRA
        atomic_write_text(out / UNION_HASH_FILE, f"{hashlib.sha256(union.read_bytes()).hexdigest()}  {union.name}\n")
    for path in files:
        atomic_write_text(out / path.relative_to(directory), compact(path))
    write_table(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"published {len(files)} evaluations of {directory} into {out}: {size / 1e6:.1f} MB; "
          f"`degaml report {out}` rebuilds the table from it alone")


def is_headroom_directory(directory: Path) -> bool:
    return (Path(directory) / SETTINGS_FILE).is_file()


__all__ = ["HeadroomBudget", "HeadroomSettings", "headroom", "is_headroom_directory", "publish_headroom", "table_rows",
           "write_table"]
