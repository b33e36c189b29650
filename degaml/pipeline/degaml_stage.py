"""Per target, what the generator's side produces: the generated adapter, DeGAML (the policy's adaptation of
it), the oracle ceiling and DeGAML-k."""

from __future__ import annotations

import time

from ..adaptation.base import AdaptationContext
from ..data import task_label
from ..memory import peak_memory_mb, reset_peak_memory
from ..models import AdaptedOutput, LoadedModel, LoraState, copy_output, read_lora_state
from .baseline_stage import baseline_setup
from .experiment import Experiment, Fold, say
from .layout import (
    DEGAML,
    DEGAML_K,
    GENERATED,
    ORACLE,
    RANDOM_ACTION,
    SeedRun,
    action_method,
    control_method,
    policy_method,
    scaled_methods,
)
from .policy_stage import oracle, policy_actions
from .records import MethodCost


def degaml_stage(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, fold: Fold) -> None:
    """Per target: the generated adapter (generalization only), the policy's adaptation of it (zero labels),
    the oracle (the action best on the target's validation items: a ceiling) and DeGAML-k (the supervised
    choice on the k-label track's support examples, `adaptation.supervised`)."""
    from ..adaptation.actions import Action
    from ..adaptation.policy import load_policy
    from ..adaptation.supervised import choose_supervised
    from ..adaptation.task_setup import adapt_task, adaptation_context
    from ..baselines.common import load_items
    from ..data.prompts import task_items
    from ..generator.generation import Generator
    from ..models import write_adapter

    gen = Generator(exp.generator_dir(seed_run, fold.name), str(lm.device))
    policy = load_policy(seed_run.policy(fold.name))
    setup = baseline_setup(exp, seed_run)
    b = exp.baselines
    # Every training task's adapter is loaded only when an action mixes them in (slow at 150 tasks).
    library = any(a.needs_library for a in policy_actions(exp.policy))
    for target in fold.targets:
        done = (GENERATED, DEGAML, ORACLE, DEGAML_K, *map(control_method, exp.prompt_controls), *single_methods(exp),
                *map(policy_method, exp.policy.compare),
                *(m for k in exp.task_counts for m in scaled_methods(k)))
        if all(seed_run.method(target, m).cost.is_file() for m in done):
            continue
        items = task_items(target, "train", exp.partition)[:exp.policy.adaptation_prompts]
        ctx = adaptation_context(gen, lm, task_label(target), items, seed_run.seed, with_library=library)
        for method in (GENERATED, DEGAML):
            directory = seed_run.method(target, method)
            if directory.cost.is_file():
                continue
            reset_peak_memory(lm.device)
            result = adapt_task(gen, ctx, directory.output, action=Action("none")) if method == GENERATED \
                else adapt_task(gen, ctx, directory.output, policy=policy)
            MethodCost(seconds=result.refinement.seconds, labelled_target_examples=0, action=result.action.label,
                       **peak_memory_mb(lm.device)).save(directory.cost)
            say(exp, f"{target}: {method} = {result.action.label} ({result.refinement.seconds:.1f} s)")
        _single_actions(exp, lm, seed_run, gen, target, ctx)
        _compared_policies(exp, seed_run, fold, gen, target, ctx)
        _prompt_controls(exp, lm, seed_run, gen, target, items)
        _scaling_curve(exp, seed_run, target, items)
        if not seed_run.method(target, ORACLE).cost.is_file():
            oracle(exp, lm, seed_run, fold, target, gen, ctx)
        directory = seed_run.method(target, DEGAML_K)
        if not directory.cost.is_file():
            reset_peak_memory(lm.device)
            started = time.perf_counter()
            support = load_items(target, setup, setup.support, "baselines.support")  # the k-label baselines' very items
            choice = choose_supervised(lm, exp.lora, degaml_k_starts(ctx, seed_run, target), support,
                                       exp.policy.select_examples, b.steps, b.lr, b.batch_size, seed_run.seed, b.max_tokens,
                                       exp.answer_format)
            seconds = time.perf_counter() - started
            write_adapter(choice.state, exp.lora, exp.model.name, directory.output,
                          info={"variant": f"supervised choice: {choice.choice}", **choice.record(),
                                "seconds": seconds})
            MethodCost(seconds=seconds, labelled_target_examples=len(support), choice=choice.choice,
                       target_steps=choice.target_steps,
                       **peak_memory_mb(lm.device)).save(directory.cost)
            say(exp, f"{target}: {DEGAML_K} = {choice.choice} ({seconds:.1f} s)")


def single_methods(exp: Experiment) -> list[str]:
    """The methods of `policy.single_actions`: each action alone, then the random action."""
    if not exp.policy.single_actions:
        return []
    return [*(action_method(a.label) for a in policy_actions(exp.policy)), RANDOM_ACTION]


def _single_actions(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, gen, target: str, ctx: AdaptationContext
                    ) -> None:
    """Each action alone on the target, and one drawn uniformly (seeded by the run's seed and the target). An
    action already applied to the target (the generated adapter's none, DeGAML's choice, or the drawn one's
    single run) is copied with its cost instead of adapted again: the adaptation is seeded, so it would write
    the same output, and evaluation scores equal outputs once."""
    import random

    from ..adaptation.task_setup import adapt_task

    if not exp.policy.single_actions:
        return
    actions = policy_actions(exp.policy)
    drawn = actions[random.Random(f"{seed_run.seed}:{task_label(target)}").randrange(len(actions))]
    made = {}  # action label: the method directory that holds its output
    for done in (seed_run.method(target, m) for m in (GENERATED, DEGAML, *(action_method(a.label) for a in actions))):
        if done.cost.is_file():
            made.setdefault(MethodCost.load(done.cost).action, done)
    for method, action in [*((action_method(a.label), a) for a in actions), (RANDOM_ACTION, drawn)]:
        directory = seed_run.method(target, method)
        if directory.cost.is_file():
            continue
        if action.label in made:
            copy_output(made[action.label].output, directory.output)
            MethodCost.load(made[action.label].cost).save(directory.cost)
            say(exp, f"{target}: {method} (the output of {made[action.label].method}, copied)")
            continue
        reset_peak_memory(lm.device)
        result = adapt_task(gen, ctx, directory.output, action=action)
        MethodCost(seconds=result.refinement.seconds, labelled_target_examples=0, action=action.label,
                   **peak_memory_mb(lm.device)).save(directory.cost)
        made[action.label] = directory
        say(exp, f"{target}: {method} ({result.refinement.seconds:.1f} s)")


def _compared_policies(exp: Experiment, seed_run: SeedRun, fold: Fold, gen, target: str, ctx: AdaptationContext) -> None:
    """DeGAML with the policy of each `policy.compare` method: the output of the action it chooses, copied from
    that action's own method when the run has it (`policy.single_actions`), else adapted."""
    from ..adaptation.policy import load_policy
    from ..adaptation.task_setup import adapt_task, task_features

    for algorithm in exp.policy.compare:
        directory = seed_run.method(target, policy_method(algorithm))
        if directory.cost.is_file():
            continue
        started = time.perf_counter()
        action = load_policy(seed_run.policy(fold.name, algorithm)).choose(task_features(gen, ctx).vector())
        single = seed_run.method(target, action_method(action.label))
        if single.cost.is_file():
            copy_output(single.output, directory.output)
            seconds = MethodCost.load(single.cost).seconds + time.perf_counter() - started
        else:
            adapt_task(gen, ctx, directory.output, action=action)
            seconds = time.perf_counter() - started
        MethodCost(seconds=seconds, labelled_target_examples=0, action=action.label).save(directory.cost)
        say(exp, f"{target}: {policy_method(algorithm)} = {action.label}")


def _prompt_controls(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, gen, target: str, items: list) -> None:
    """The generated adapter from prompts that are not the target's (`prompt_controls`): another target's
    (`swapped`) or random text (`random`), as many as the target's own and in the generator's format."""
    from ..data.prompts import format_prompt, task_items
    from ..generator.controls import control_prompts
    from ..models import write_adapter

    def prompts_of(task: str) -> list[str]:
        chosen = items if task == target else task_items(task, "train", exp.partition)[:len(items)]
        return [format_prompt(item, gen.prompt_format) for item in chosen]

    for control in exp.prompt_controls:
        directory = seed_run.method(target, control_method(control))
        if directory.cost.is_file():
            continue
        source, prompts = control_prompts(control, target, exp.targets, prompts_of, lm.tokenizer, seed_run.seed)
        state, info = gen.generate_state(prompts, seed_run.seed)
        write_adapter(state, exp.lora, exp.model.name, directory.output, {**info.to_info(), "prompts_from": source})
        MethodCost(seconds=info.generation_seconds, labelled_target_examples=0).save(directory.cost)
        say(exp, f"{target}: generated from {source}'s prompts ({control_method(control)})")


def _scaling_curve(exp: Experiment, seed_run: SeedRun, target: str, items: list) -> None:
    """For each K of `task_counts`: the adapter the generator trained on K meta-training tasks makes from the
    target's prompts, and that generator's union LoRA (its residual base), both zero-label methods."""
    from ..data.prompts import format_prompt
    from ..generator.generation import Generator
    from ..models import read_lora_state, write_adapter
    from .generator_stage import shared_fold

    for count in exp.task_counts:
        generated, union = (seed_run.method(target, m) for m in scaled_methods(count))
        if generated.cost.is_file() and union.cost.is_file():
            continue
        fold = shared_fold(exp, count)
        gen = Generator(seed_run.generator(fold.name))
        state, info = gen.generate_state([format_prompt(item, gen.prompt_format) for item in items], seed_run.seed)
        write_adapter(state, exp.lora, exp.model.name, generated.output,
                      {**info.to_info(), "meta_tasks": list(fold.training)})
        MethodCost(seconds=info.generation_seconds, labelled_target_examples=0).save(generated.cost)
        write_adapter(read_lora_state(seed_run.residual_base(fold.name)), exp.lora, exp.model.name, union.output,
                      {"union_of": list(fold.training)})
        MethodCost(seconds=0.0, labelled_target_examples=0).save(union.cost)
        say(exp, f"{target}: {scaled_methods(count)[0]} and {scaled_methods(count)[1]}")


def degaml_k_starts(ctx: AdaptationContext, seed_run: SeedRun, target: str) -> dict[str, LoraState]:
    """DeGAML-k's starting adapters: the generated one, and DeGAML's label-free adaptation of it when that is
    a plain adapter that differs from it (a test-time-scaling ensemble or a latent delta cannot be fine-tuned)."""
    starts = {GENERATED: ctx.generate(seed_run.seed)[0]}
    adapted = AdaptedOutput.load(seed_run.method(target, DEGAML).output)
    if adapted.kind == "plain" and adapted.scoring_digest() != \
            AdaptedOutput.load(seed_run.method(target, GENERATED).output).scoring_digest():
        starts[DEGAML] = read_lora_state(adapted.directory)
    return starts
