"""The baselines DeGAML is compared with, one module per method under the plug-in convention of
`degaml/plugins.py`: `NAME`, `OUTPUT` (all write plain adapters), `NEEDS_LIBRARY` (none reads the generator's
training adapters), `META_TRAINS`, a typed `CONFIG` dataclass (its defaults are the method's defaults everywhere),
`meta_train(job, config, progress) -> tensors` (what is learned before the target is known, cacheable per
set of meta-training tasks) and `finish(job, config, tensors, out, started) -> info` (target adaptation and
the output `degaml evaluate` scores). `job` (`common.prepare`) holds the base model, the target's support
examples and the meta-training examples. A module whose meta-training is shared names it in `META_FROM`,
and the settings that determine it in `META_CONFIG` (a run then trains it once for both). Fairness rules:
docs/baselines.md.

Adding a baseline is one module, its settings class with an entry in `settings.SETTINGS` (what `--help` reads
without torch), and one entry in `registry.MODULES`: the `degaml baseline <name>` command and the
`baselines.<name>` section of a run's settings are derived from the registry."""

from ..lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "registry": ("METHODS", "MODULES", "Method", "run_baseline"),
    "common": ("BaselineJob", "prepare"),
    "settings": ("BaselineSetup",),
})
