"""A per-item context budget (`evaluation.max_length`: each option's scoring window, the context cut on the
left) against the model's whole window, on the same items and model in one run on the same CPU: how much
time it saves on long-context tasks and how many predictions it changes.

Prints per task: identical predictions (acc and acc_norm), the largest log-likelihood difference, items/s
of each and the ratio, then each scoring's accuracy.

    python -m benchmarks.context_budget --max-length 256 --limit 32
"""

from __future__ import annotations

from benchmarks.agreement import (
    machine_line,
    print_comparison,
    scoring_parser,
    selected_test_items,
    timed_scores,
)
from degaml.config import ModelConfig
from degaml.evaluation.metrics import predict_acc
from degaml.models import load_model

LONG_CONTEXT_TASKS = "mmlu_subject_high_school_european_history,mmlu_subject_high_school_us_history"
"""The offline tasks with the longest contexts (reading passages before the question)."""


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.set_defaults(tasks=LONG_CONTEXT_TASKS, limit=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    lm = load_model(ModelConfig(name=args.model, dtype=args.dtype, device="cpu"))
    print(f"model {args.model}, batch size {args.batch_size}, {args.limit} test items per task, window "
          f"{lm.model.config.max_position_embeddings} against max_length {args.max_length}\n{machine_line(lm)}\n")
    selected = selected_test_items(args.tasks, args.limit)
    scored: dict[str, dict[str, list[list[float]]]] = {"window": {}, "budget": {}}

    def scoring(name: str, max_length: int | None):
        def score(items):
            scores, seconds = timed_scores(lm, items, args.batch_size, max_length)
            scored[name][items[0].id] = scores
            return scores, seconds
        return score

    print_comparison(selected, "window", f"max_length {args.max_length}", scoring("window", None),
                     scoring("budget", args.max_length))
    print("\n| task | acc, whole window | acc, budget |\n|---|---|---|")
    for task, items in selected.items():
        accs = [sum(predict_acc(s) == it.gold for s, it in zip(scored[k][items[0].id], items)) / len(items)
                for k in ("window", "budget")]
        print(f"| {task} | {100 * accs[0]:.1f} | {100 * accs[1]:.1f} |")


if __name__ == "__main__":
    main()
