"""Per target, what the generator's side produces: the generated adapter, DeGAML, DeGAML-k, and the
zero-label floors from the generator's training data (the mean adapter, the retrieval mixture)."""

from __future__ import annotations

import time

from ..adaptation.base import AdaptationContext
from ..data import task_label
from ..io import atomic_write_json
from ..memory import peak_memory_mb, reset_peak_memory
from ..models import AdaptedOutput, LoadedModel, LoraState, read_lora_state
from .baseline_stage import baseline_setup
from .experiment import Experiment, Fold, say
from .layout import DEGAML, DEGAML_K, GENERATED, MEAN, ORACLE, RETRIEVAL, SeedRun
from .policy import oracle


def degaml_stage(exp: Experiment, lm: LoadedModel, run: SeedRun, fold: Fold) -> None:
    """Per target: the generated adapter (generalization only), the policy's adaptation of it (zero labels),
    the oracle (the action best on the target's validation items: a reference) and DeGAML-k (the supervised
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
        items = task_items(target, "train", exp.partition_seed, source=exp.source)[:exp.policy.adaptation_prompts]
        ctx = adaptation_context(gen, lm, task_label(target), items, run.seed)
        for method in (GENERATED, DEGAML):
            directory = run.method(target, method)
            if directory.cost.is_file():
                continue
            reset_peak_memory(lm.device)
            result = adapt_task(gen, ctx, directory.output, action=Action("none")) if method == GENERATED \
                else adapt_task(gen, ctx, directory.output, policy=policy)
            atomic_write_json(directory.cost, {"seconds": result.info["seconds"], "labelled_target_examples": 0,
                                               "action": result.action.label, **peak_memory_mb(lm.device)})
            say(exp, f"{target}: {method} = {result.action.label} ({result.info['seconds']:.1f} s)")
        if not run.method(target, ORACLE).cost.is_file():
            oracle(exp, lm, run, fold, target, gen, ctx)
        directory = run.method(target, DEGAML_K)
        if not directory.cost.is_file():
            reset_peak_memory(lm.device)
            started = time.perf_counter()
            support = load_examples(lm, target, setup, setup.support)  # the k-label baselines' very examples
            choice = choose_supervised(lm, exp.lora, degaml_k_starts(ctx, run, target), support,
                                       exp.policy.select_examples, b.steps, b.lr, b.batch_size, run.seed)
            seconds = time.perf_counter() - started
            write_adapter(choice.state, exp.lora, exp.model, directory.output,
                          info={"variant": f"supervised choice: {choice.choice}", **choice.record(),
                                "seconds": seconds})
            atomic_write_json(directory.cost, {"seconds": seconds, "labelled_target_examples": len(support),
                                               "choice": choice.choice, **peak_memory_mb(lm.device)})
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


def floors_stage(exp: Experiment, run: SeedRun, fold: Fold) -> None:
    """Per target, the zero-label floors from the generator's training data: the mean of its training tasks'
    adapters, and their retrieval mixture for the target's unlabelled prompts (the ones DeGAML sees)."""
    from ..data.prompts import task_items
    from ..generator.dataset import average_states
    from ..generator.encoder import PromptEncoder
    from ..generator.floors import task_adapters
    from ..generator.retrieval import retrieval_mixture
    from ..models import write_adapter

    pending = [t for t in fold.targets if not all(run.method(t, m).cost.is_file() for m in (MEAN, RETRIEVAL))]
    if not pending:
        return
    started = time.perf_counter()
    sources = exp.trained_on(fold).training
    training = [task_label(t) for t in sources]
    adapters = task_adapters(run.trajectories, training)
    mean = average_states(list(adapters.values()))
    mean_seconds = time.perf_counter() - started
    g = exp.generator
    encoder = PromptEncoder.with_default_cache(g.encoder, g.prompt_tokens)

    def prompts(task: str, limit: int) -> list[str]:
        return [it.prompt for it in task_items(task, "train", exp.partition_seed, source=exp.source)[:limit]]

    library = {task_label(t): (prompts(t, g.max_prompts), adapters[task_label(t)]) for t in sources}
    for target in pending:
        started = time.perf_counter()
        mixed, weights = retrieval_mixture(prompts(target, exp.policy.adaptation_prompts), library, encoder)
        for method, state, seconds, info in ((MEAN, mean, mean_seconds, {"tasks": training}),
                                             (RETRIEVAL, mixed, time.perf_counter() - started, {"weights": weights})):
            directory = run.method(target, method)
            write_adapter(state, exp.lora, exp.model, directory.output, info={**info, "seconds": seconds})
            atomic_write_json(directory.cost, {"seconds": seconds, "labelled_target_examples": 0})
        say(exp, f"{target}: {MEAN} and {RETRIEVAL} adapters")
