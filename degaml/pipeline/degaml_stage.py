"""Per target, what the generator's side produces: the generated adapter, DeGAML (the policy's adaptation of
it), the oracle ceiling and DeGAML-k."""

from __future__ import annotations

import time

from ..adaptation.base import AdaptationContext
from ..data import task_label
from ..memory import peak_memory_mb, reset_peak_memory
from ..models import AdaptedOutput, LoadedModel, LoraState, read_lora_state
from .baseline_stage import baseline_setup
from .experiment import Experiment, Fold, say
from .layout import DEGAML, DEGAML_K, GENERATED, ORACLE, SeedRun
from .policy_stage import oracle
from .records import MethodCost


def degaml_stage(exp: Experiment, lm: LoadedModel, run: SeedRun, fold: Fold) -> None:
    """Per target: the generated adapter (generalization only), the policy's adaptation of it (zero labels),
    the oracle (the action best on the target's validation items: a ceiling) and DeGAML-k (the supervised
    choice on the k-label track's support examples, `adaptation.supervised`)."""
    from ..adaptation.actions import Action
    from ..adaptation.policy import load_policy
    from ..adaptation.supervised import choose_supervised
    from ..adaptation.task_setup import adapt_task, adaptation_context
    from ..baselines.common import load_examples
    from ..data.prompts import task_items
    from ..generator.generation import Generator
    from ..models import write_adapter

    gen = Generator(exp.generator_dir(run, fold.name))
    policy = load_policy(run.policy(fold.name))
    setup = baseline_setup(exp, run)
    b = exp.baselines
    for target in fold.targets:
        if all(run.method(target, m).cost.is_file() for m in (GENERATED, DEGAML, ORACLE, DEGAML_K)):
            continue
        items = task_items(target, "train", exp.partition)[:exp.policy.adaptation_prompts]
        ctx = adaptation_context(gen, lm, task_label(target), items, run.seed)
        for method in (GENERATED, DEGAML):
            directory = run.method(target, method)
            if directory.cost.is_file():
                continue
            reset_peak_memory(lm.device)
            result = adapt_task(gen, ctx, directory.output, action=Action("none")) if method == GENERATED \
                else adapt_task(gen, ctx, directory.output, policy=policy)
            MethodCost(seconds=result.info["seconds"], labelled_target_examples=0, action=result.action.label,
                       **peak_memory_mb(lm.device)).save(directory.cost)
            say(exp, f"{target}: {method} = {result.action.label} ({result.info['seconds']:.1f} s)")
        if not run.method(target, ORACLE).cost.is_file():
            oracle(exp, lm, run, fold, target, gen, ctx)
        directory = run.method(target, DEGAML_K)
        if not directory.cost.is_file():
            reset_peak_memory(lm.device)
            started = time.perf_counter()
            support = load_examples(lm, target, setup, setup.support, "baselines.support")  # the k-label baselines' very examples
            choice = choose_supervised(lm, exp.lora, degaml_k_starts(ctx, run, target), support,
                                       exp.policy.select_examples, b.steps, b.lr, b.batch_size, run.seed)
            seconds = time.perf_counter() - started
            write_adapter(choice.state, exp.lora, exp.model.name, directory.output,
                          info={"variant": f"supervised choice: {choice.choice}", **choice.record(),
                                "seconds": seconds})
            MethodCost(seconds=seconds, labelled_target_examples=len(support), choice=choice.choice,
                       **peak_memory_mb(lm.device)).save(directory.cost)
            say(exp, f"{target}: {DEGAML_K} = {choice.choice} ({seconds:.1f} s)")


def degaml_k_starts(ctx: AdaptationContext, run: SeedRun, target: str) -> dict[str, LoraState]:
    """DeGAML-k's starting adapters: the generated one, and DeGAML's label-free adaptation of it when that is
    a plain adapter that differs from it (a test-time-scaling ensemble or a latent delta cannot be fine-tuned)."""
    starts = {GENERATED: ctx.generate(run.seed)[0]}
    adapted = AdaptedOutput.load(run.method(target, DEGAML).output)
    if adapted.kind == "plain" and adapted.scoring_digest() != \
            AdaptedOutput.load(run.method(target, GENERATED).output).scoring_digest():
        starts[DEGAML] = read_lora_state(adapted.directory)
    return starts
