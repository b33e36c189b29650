"""Both evaluation protocols of docs/design.md, evaluation: log-likelihood (acc, acc_norm) and generative."""

from .generative import extract_answer, generate_answers
from .harness import TaskResult, evaluate_items, evaluate_tasks, format_table
from .loglikelihood import ChoiceScore, LoglikelihoodScorer
from .metrics import mean_and_stderr, predict_acc, predict_acc_norm

__all__ = [
    "ChoiceScore",
    "LoglikelihoodScorer",
    "TaskResult",
    "evaluate_items",
    "evaluate_tasks",
    "extract_answer",
    "format_table",
    "generate_answers",
    "mean_and_stderr",
    "predict_acc",
    "predict_acc_norm",
]
