"""DeGAML-LLM: decoupled generalization and adaptation in meta-learning for LLMs.

The Python API (`degaml.api`) is importable from here; it loads torch only when first used:

    import degaml
    generator = degaml.load_generator("runs/offline-default/seed_0/folds/shared/generator")
    adapter = degaml.generate_lora(generator, prompts, "adapters/my-task")
"""

__version__ = "0.1.0"

API = ("load_generator", "load_model", "generate_lora", "adapt", "evaluate")
__all__ = list(API)


def __getattr__(name: str):
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'degaml' has no attribute {name!r}")
