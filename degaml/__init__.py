"""DeGAML-LLM: decoupled generalization and adaptation in meta-learning for LLMs."""

__version__ = "0.1.0"
