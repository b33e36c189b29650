"""The run directory of `degaml run`: one owner for every path the stages write and the report reads.
The seven stages run in this order (`stages.run_experiment`):

    <out>/experiment.yaml                                  the resolved settings
    <out>/precision.json                                   the dtype the model computes in, and why
    <out>/seed_<s>/trajectories/<task>/                    1 collect: LoRA trajectories
    <out>/seed_<s>/folds/<fold>/residual_base/             2 generator: union LoRA the generator starts from
                                                             (`generator.residual_base: union`)
    <out>/seed_<s>/folds/<fold>/generator/                 2 generator: trained without the fold's targets;
                                                             `folds/shared/` holds the one trained on the
                                                             meta-training tasks alone (`shared_generator_steps`)
    <out>/seed_<s>/folds/<fold>/rewards/                   3 policy: validation rewards of every action on the
                                                             fold's target, read by the other folds' policies
    <out>/seed_<s>/folds/<fold>/policy/                    3 policy: learnt from the other folds' targets
                                                             (nested leave-one-out); `policy-<method>/` for
                                                             each of `policy.compare`
    <out>/seed_<s>/targets/<task>/<method>/output/         4-6 degaml, floors, baselines: what is scored
    <out>/seed_<s>/targets/<task>/<method>/cost.json       seconds and labelled target examples used
    <out>/seed_<s>/folds/<fold>/baselines/<method>/        6 baselines: meta-training, cached per fold
    <out>/seed_<s>/targets/<task>/<method>/eval/           7 evaluation: scores (the test partition, once), in the
                                                             log-likelihood protocol; `eval-generative/` in the
                                                             generative one (`evaluation.protocol`)
    <out>/seed_<s>/timings.json                            wall time and peak memory of each stage
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..data import task_label

LOGLIKELIHOOD = "loglikelihood"
"""The primary protocol: its evaluation is a method's `eval/`."""
BASE, GENERATED, DEGAML = "base", "generated", "degaml"
"""Method names of the base model, the generalization module alone, and generalization + adaptation."""
MEAN, RETRIEVAL = "mean", "retrieval"
"""The zero-label floors from the generator's training data: the mean of the training tasks' adapters and
their retrieval mixture."""
UNION_MATCHED = "union-matched"
"""A zero-label floor beside a generator residual on union LoRA: that union LoRA continued for as many optimizer
steps, of as many examples, on the same tasks as the generator trained on top of it (so the generator's gain
over union is not its extra training budget)."""
ORACLE = "oracle"
"""A ceiling, not a method: the generated adapter refined by the action that scores best on the target's own
labelled validation items (the best a policy could choose)."""
TARGET_FINETUNED = "target-finetuned"
"""A ceiling, not a method: the target's own trajectory's adapter (every saved checkpoint averaged, as a
training task's adapter is), fine-tuned on the target's labelled train partition."""
FLOORS = (MEAN, RETRIEVAL, UNION_MATCHED)
"""What a run's `floors` setting may name: zero-label floors built from the generator's training data (the
target-finetuned ceiling is the run's `ceiling` setting)."""
RANDOM_ACTION = "random-action"
"""The generated adapter refined by an action drawn uniformly from the policy's actions (per target and seed,
`policy.single_actions`): what a policy must beat to have learnt anything."""


ACTION_PREFIX = "action-"


def action_method(label: str) -> str:
    """The method of one action applied to every target (`policy.single_actions`): `action-ttt_steps=5_lr=1e-05`."""
    return ACTION_PREFIX + label.replace(" ", "_")


def policy_method(algorithm: str) -> str:
    """DeGAML with its policy trained by `algorithm` (`policy.compare`): `degaml-rest_em`."""
    return f"{DEGAML}-{algorithm}"


def control_method(control: str, of: str = GENERATED) -> str:
    """The method of a prompt control (`prompt_controls`) of the generated adapter or the retrieval floor:
    `generated-swapped-prompts`, `retrieval-random-prompts`."""
    return f"{of}-{control}-prompts"


def scaled_methods(count: int) -> tuple[str, str]:
    """The methods of the scaling curve's generator trained on `count` meta-training tasks, and its union LoRA."""
    return f"{GENERATED}-{count}-tasks", f"union-{count}-tasks"


CALIBRATED = "-calibrated"
"""Suffix of a method's label-free calibrated scores (`evaluation.calibrated`): `base-calibrated`,
`union-calibrated`, ..."""
DEGAML_K = "degaml-k"
"""The k-label track's DeGAML: of the generated adapter and DeGAML's label-free adaptation of it, each as it is
or fine-tuned on k - `policy.select_examples` of the k labelled support examples, the one with the lowest loss
on the other `policy.select_examples` (`adaptation/supervised.py`)."""


@dataclass(frozen=True)
class MethodDir:
    """One method's artifacts for one target."""

    path: Path

    @property
    def output(self) -> Path:
        return self.path / "output"

    @property
    def cost(self) -> Path:
        return self.path / "cost.json"

    @property
    def eval(self) -> Path:
        return self.eval_for(LOGLIKELIHOOD)

    @property
    def results(self) -> Path:
        return self.results_for(LOGLIKELIHOOD)

    def eval_for(self, protocol: str) -> Path:
        """The evaluation of one protocol: `eval/` (log-likelihood) or `eval-generative/`."""
        return self.path / ("eval" if protocol == LOGLIKELIHOOD else f"eval-{protocol}")

    def results_for(self, protocol: str) -> Path:
        return self.eval_for(protocol) / "results.json"

    @property
    def task(self) -> str:
        return self.path.parent.name

    @property
    def method(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class SeedRun:
    """Everything one seed of a run writes, under `<out>/seed_<s>`."""

    root: Path

    @property
    def seed(self) -> int:
        return int(self.root.name.removeprefix("seed_"))

    @property
    def trajectories(self) -> Path:
        return self.root / "trajectories"

    @property
    def timings(self) -> Path:
        return self.root / "timings.json"

    def fold(self, fold: str) -> Path:
        return self.root / "folds" / fold

    def generator(self, fold: str) -> Path:
        return self.fold(fold) / "generator"

    def residual_base(self, fold: str) -> Path:
        """The adapter the fold's generator is residual on, when the run makes one (`residual_base: union`)."""
        return self.fold(fold) / "residual_base"

    def policy(self, fold: str, training: str = "") -> Path:
        """The fold's policy; `training`: the one of a `policy.compare` method."""
        return self.fold(fold) / ("policy" if not training else f"policy-{training}")

    def rewards(self, fold: str) -> Path:
        """Validation rewards of every action for the fold's target, adapted by the fold's generator: read
        by the other folds' policies and by the fold's oracle."""
        return self.fold(fold) / "rewards"

    def baseline_cache(self, fold: str, method: str) -> Path:
        return self.fold(fold) / "baselines" / method

    def method(self, target: str, method: str) -> MethodDir:
        return MethodDir(self.root / "targets" / task_label(target) / method)

    def evaluated(self, protocol: str = "loglikelihood") -> Iterator[MethodDir]:
        """Every (target, method) with a finished evaluation in `protocol`, in a stable order."""
        name = MethodDir(Path()).eval_for(protocol).name
        for results in sorted(self.root.glob(f"targets/*/*/{name}/results.json")):
            yield MethodDir(results.parent.parent)


PRECISION_FILE = "precision.json"
"""At the run directory's top: `records.RunPrecision`."""


def seed_run_in(out: Path, seed: int) -> SeedRun:
    return SeedRun(Path(out) / f"seed_{seed}")


def seed_runs(out: Path) -> list[SeedRun]:
    """The seeds a run directory holds, in order."""
    return sorted((SeedRun(p) for p in Path(out).glob("seed_*") if p.is_dir()), key=lambda r: r.seed)
