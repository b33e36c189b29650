"""The reward table: every action applied to a task and scored on a labelled partition (validation for
policy training and for the oracle; never test). Rows are appended to a JSONL file as they are measured,
so an interrupted table resumes where it stopped, and to the machine's cache under their `reward_key`, so
another run that adapts the same task with the same generator, prompts, seed and settings reads them
instead of measuring again (at 50 reward tasks, hours on 2 CPU cores)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import DataConfig, EvalConfig
from ..evaluation.output_scoring import Loaded, evaluate_adapted
from ..io import atomic_write_text, cache_root, key_fields
from ..models import AdaptedOutput
from .actions import Action
from .apply import apply_action
from .base import AdaptationContext, Refinement
from .latent import per_sample_scorer

REWARDS_FILE = "rewards.jsonl"


@dataclass(frozen=True)
class RewardRow:
    """One measured reward (a line of REWARDS_FILE): an action applied to a task's generated adapter, scored on
    `split`. `score` is the row's `metric`; the seconds are those of the measurement, also where a row is read
    from the cache; `key` is the `reward_key` it was measured under (a row under another key is measured again)."""

    task: str
    split: str
    action: dict
    """`Action.to_dict()`."""
    action_label: str
    n: int
    acc: float
    acc_norm: float
    metric: str
    score: float
    adapt_seconds: float
    eval_seconds: float
    fell_back: bool
    reason: str = ""
    key: str = ""


def read_rows(path: Path) -> list[RewardRow]:
    """The rows of `path` ([] where there is none); a last line cut short by an interruption is dropped (it is
    measured again), any other fault refused naming the file and line."""
    if not path.is_file():
        return []
    rows, lines = [], path.read_text().splitlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # a row cut short by an interruption: it is measured again
                break
            raise ValueError(f"{path}, line {n}: not a JSON row") from None
        try:
            rows.append(RewardRow(**record))
        except TypeError as e:
            raise ValueError(f"{path}, line {n}: not a reward row ({e})") from None
    return rows


def reward_key(ctx: AdaptationContext, task: str, data: DataConfig, config: EvalConfig, metric: str) -> str:
    """A digest of everything a reward depends on besides the action: the task and its partition, split and item
    limit, the scoring settings and metric, the base model and its dtype, the unlabelled prompts, the seed,
    and the generated adapter itself (so another generator, another prompt sample or changed settings never
    reuse a row)."""
    import hashlib

    digest = hashlib.sha256(json.dumps({
        "task": task, "split": data.split, "limit": data.limit, "partition": asdict(data.partition),
        "eval": key_fields(config), "metric": metric, "model": ctx.lm.source, "dtype": ctx.lm.precision.dtype,
        "prompts": list(ctx.prompts), "seed": ctx.seed}, sort_keys=True, default=str).encode())
    state, _ = ctx.generate(ctx.seed)
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _append(path: Path, row: RewardRow) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(asdict(row)) + "\n")


def _rewritten(path: Path) -> list[RewardRow]:
    """The rows of `path`; the file is rewritten without a row that an interruption cut short, and only then."""
    rows = read_rows(path)
    if path.is_file() and len(rows) < sum(1 for line in path.read_text().splitlines() if line.strip()):
        atomic_write_text(path, "".join(json.dumps(asdict(r)) + "\n" for r in rows))
    return rows


def measure_actions(ctx: AdaptationContext, task: str, actions: Sequence[Action], data: DataConfig,
                    config: EvalConfig, work: Path, loaded: Loaded, metric: str, progress: bool = True,
                    adapted: Mapping[str, Path] | None = None) -> dict[str, RewardRow]:
    """{action label: row} for `task`, measuring only the actions neither in `work/rewards.jsonl` nor in the
    machine's cache (`<cache>/rewards/<reward_key>.jsonl`). `adapted`: outputs the caller already has ({action
    label: directory}, made from this very context), scored as they are instead of adapting again."""
    import time

    work.mkdir(parents=True, exist_ok=True)
    path = work / REWARDS_FILE
    key = reward_key(ctx, task, data, config, metric)
    done = {r.action_label: r for r in _rewritten(path) if r.task == task and r.key == key}
    shared = cache_root() / "rewards" / f"{key}.jsonl"
    cached = {r.action_label: r for r in _rewritten(shared) if r.key == key}
    for label, row in done.items():  # a run that measured before the cache existed fills it
        if label not in cached:
            _append(shared, row)
    for action in actions:
        if action.label in done:
            continue
        if action.label in cached:
            done[action.label] = cached[action.label]
            _append(path, done[action.label])
            if progress:
                print(f"  {task:14s} {action.label:44s} {metric} {100 * cached[action.label].score:5.1f}  "
                      "(measured by an earlier run: from the cache)")
            continue
        given = (adapted or {}).get(action.label)
        out = given or work / "adapted" / task / action.slug
        if given is not None:
            refined = Refinement.from_info(AdaptedOutput.load(given).info, str(given))
        else:
            if out.exists():  # a complete directory from an interrupted run whose row was not written
                shutil.rmtree(out)
            refined = Refinement.from_info(apply_action(action, ctx, out), str(out))
        start = time.perf_counter()
        (result,), _ = evaluate_adapted(ctx.lm, out, data, config, progress=progress, loaded=loaded,
                                        item_scorer=per_sample_scorer)
        row = RewardRow(task=task, split=data.split, key=key, action=action.to_dict(), action_label=action.label,
                        n=result.num_items, acc=result.metrics["acc"], acc_norm=result.metrics["acc_norm"],
                        metric=metric, score=result.metrics[metric], adapt_seconds=refined.seconds,
                        eval_seconds=time.perf_counter() - start, fell_back=refined.fell_back, reason=refined.reason)
        _append(path, row)
        _append(shared, row)
        done[action.label] = row
        if given is None:
            shutil.rmtree(out)
        if progress:
            print(f"  {task:14s} {action.label:44s} {metric} {100 * row.score:5.1f}  "
                  f"(adapt {row.adapt_seconds:.1f} s, eval {row.eval_seconds:.1f} s)")
    return {a.label: done[a.label] for a in actions}


def format_reward_table(table: dict[str, dict[str, RewardRow]], actions: Sequence[Action]) -> str:
    """Markdown: one row per action, one column per task, the metric's score (in points)."""
    tasks = list(table)
    lines = ["| action | " + " | ".join(tasks) + " | average |", "|---|" + "---|" * (len(tasks) + 1)]
    for action in actions:
        scores = [table[t][action.label].score for t in tasks]
        cells = [f"{100 * s:.1f}" for s in scores] + [f"{100 * sum(scores) / len(scores):.1f}"]
        lines.append(f"| {action.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
