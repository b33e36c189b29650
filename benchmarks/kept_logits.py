"""Scoring with the LM head run only at the positions that predict continuation tokens (what the scorer
does, `logits_to_keep`) against running it at every position and selecting afterwards (the scorer before
it): the same items and model, in one run on the same CPU.

Prints per task: identical predictions (acc and acc_norm), the largest log-likelihood difference, and
items/s of each with the ratio.

    python -m benchmarks.kept_logits --dtype bfloat16 --limit 100
"""

from __future__ import annotations

import torch

from benchmarks.agreement import (
    machine_line,
    print_comparison,
    scoring_parser,
    selected_test_items,
    timed_scores,
)
from degaml.config import ModelConfig
from degaml.evaluation import loglikelihood
from degaml.models import load_model


def every_position(model: torch.nn.Module, keep: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
    """The reference: logits at every position of every row, the kept ones selected afterwards."""
    return model(**inputs).logits[keep]


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    lm = load_model(ModelConfig(name=args.model, dtype=args.dtype, device="cpu"))
    print(f"model {args.model}, batch size {args.batch_size}, {args.limit} test items per task\n{machine_line(lm)}\n")
    selected = selected_test_items(args.tasks, args.limit)
    kept = loglikelihood.logits_at

    def scored_with(logits_at):
        def score(items):
            loglikelihood.logits_at = logits_at
            try:
                return timed_scores(lm, items, args.batch_size)
            finally:
                loglikelihood.logits_at = kept
        return score

    print_comparison(selected, "every position", "kept positions", scored_with(every_position), scored_with(kept))


if __name__ == "__main__":
    main()
