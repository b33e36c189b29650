"""Both evaluation protocols of docs/design.md, evaluation: log-likelihood (acc, acc_norm) and generative."""

from ..lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    'generative': ('extract_answer', 'generate_answers'),
    'harness': ('TaskResult', 'evaluate_items', 'evaluate_tasks', 'format_table'),
    'loglikelihood': ('ChoiceScore', 'LoglikelihoodScorer'),
    'metrics': ('mean_and_stderr', 'predict_acc', 'predict_acc_norm'),
})
