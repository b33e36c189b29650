"""The generator's own section of the report: the generated adapter against every other zero-label method
(floors, union LoRA, calibrated scores, prompt controls) on all targets of a domain and without the tasks
whose score follows an answer prior (`evaluation.prior_tasks`), each with its paired bootstrap interval; and
per target, the cosine of the generated change (from the residual base) with the target's own fine-tuned
adapter, from its own prompts and from the swapped ones."""

from __future__ import annotations

from pathlib import Path

from ..experiment import Experiment, folds
from ..layout import DEGAML, GENERATED, MEAN, TARGET_FINETUNED, control_method, seed_runs
from .verdicts import Correctness, paired_difference


def comparisons(correct: Correctness, tasks: list[str], others: list[str], prior_tasks: list[str],
                subject: str = GENERATED) -> list[str]:
    """Markdown rows: `subject` minus each of `others`, on `tasks` and without the prior tasks among them."""
    rest = [t for t in tasks if t not in prior_tasks]
    scopes = [("all", tasks)] + ([(f"without {', '.join(t for t in tasks if t in prior_tasks)}", rest)]
                                 if rest and rest != tasks else [])
    lines = [f"| {subject} minus | " + " | ".join(f"{name} ({len(ts)} tasks)" for name, ts in scopes) + " |",
             "|---|" + "---|" * len(scopes)]
    for other in [m for m in others if m not in (subject, DEGAML)]:
        cells = []
        for _, scope in scopes:
            d = paired_difference(correct, subject, other, scope)
            cells.append(f"{d} ({d.verdict}, {d.items} items)" if d else "-")
        lines.append(f"| {other} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def change_cosines(run_dir: Path, settings: Experiment) -> list[str]:
    """Per seed and target: cos(dW_generated - dW_base, dW_target-finetuned), from the target's own prompts and
    the swapped ones, and the sizes of the generated change and of the own adapter relative to the base's
    ||dW_base||, where the run has the target-finetuned ceiling. The base is the residual base (union
    LoRA) when the run makes one, else the mean adapter."""
    from ...models import delta_change_cosine, delta_norm, delta_relative_error, read_lora_state
    from ..generator_stage import residual_source

    if settings.ceiling is None:
        return []
    swapped = control_method("swapped") if "swapped" in settings.prompt_controls else None
    lines = ["| seed | target | own prompts | swapped prompts | size of the generated change | size of the own "
             "adapter |", "|---|---|---|---|---|---|"]
    fold_of = {t: f for f in folds(settings.tasks) for t in f.targets}
    for seed_run in seed_runs(run_dir):
        for target, fold in fold_of.items():
            own_dir = seed_run.method(target, TARGET_FINETUNED).output
            base_dir = seed_run.residual_base(residual_source(settings, settings.trained_on(fold)).name) \
                if settings.residual_on_union else seed_run.method(target, MEAN).output
            if not (own_dir.is_dir() and base_dir.is_dir() and seed_run.method(target, GENERATED).output.is_dir()):
                continue
            own, base = read_lora_state(own_dir), read_lora_state(base_dir)
            generated = read_lora_state(seed_run.method(target, GENERATED).output)
            cells = [f"{delta_change_cosine(read_lora_state(seed_run.method(target, m).output), base, own):+.3f}"
                     if m and seed_run.method(target, m).output.is_dir() else "-" for m in (GENERATED, swapped)]
            # ||dW_generated - dW_base|| and ||dW_own||, each over ||dW_base||: whether the generator moved at all.
            cells += [f"{delta_relative_error(generated, base):.4f}", f"{delta_norm(own) / max(delta_norm(base), 1e-30):.3f}"]
            lines.append(f"| {seed_run.seed} | {target} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def scaling(correct: Correctness, tasks: list[str], settings: Experiment) -> list[tuple[int, str, object]]:
    """(meta-training tasks, scope, generated minus union LoRA of the same tasks) along the scaling curve: each
    of `task_counts`, then all of `tasks.meta_training` (the main generator against union LoRA), on all
    `tasks` and without the prior tasks."""
    from ..layout import scaled_methods

    rest = [t for t in tasks if t not in settings.evaluation.prior_tasks]
    scopes = [("all", tasks)] + ([("without prior tasks", rest)] if rest and rest != tasks else [])
    points = []
    pairs = [(k, *scaled_methods(k)) for k in settings.task_counts]
    pairs.append((len(settings.tasks.meta_training), GENERATED, "union"))
    for count, generated, union in pairs:
        for scope, scope_tasks in scopes:
            d = paired_difference(correct, generated, union, scope_tasks)
            if d is not None:
                points.append((count, scope, d))
    return points if settings.task_counts else []


def scaling_plot(points: list[tuple[int, str, object]], out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for scope in dict.fromkeys(scope for _, scope, _ in points):
        mine = sorted((k, d) for k, s, d in points if s == scope)
        ks = [k for k, _ in mine]
        ax.errorbar(ks, [d.difference for _, d in mine],
                    yerr=[[d.difference - d.low for _, d in mine], [d.high - d.difference for _, d in mine]],
                    marker="o", capsize=3, label=scope)
    ax.axhline(0, color="#999999", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("meta-training tasks")
    ax.set_ylabel("generated minus union LoRA (points, 95% CI)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=120)
    plt.close(fig)
    return "scaling.png"
