"""Scoring with the adapter merged into the weights (what evaluation does) against scoring with PEFT's
unmerged LoRA layers: the same items, model and adapter, in one run on the same CPU.

Prints per task: identical predictions (acc and acc_norm), the largest log-likelihood difference, and
items/s of each with the ratio.

    python benchmarks/merged_scoring.py --adapter runs/heldout/adapters/union --dtype bfloat16 --limit 100
"""

from __future__ import annotations

from pathlib import Path

import torch
from agreement import print_comparison, scoring_parser, selected_test_items, timed_scores

from degaml.config import ModelConfig
from degaml.evaluation.adapted import applied_adapter
from degaml.models import load_adapter, load_model


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()

    lm = load_model(ModelConfig(name=args.model, dtype=args.dtype, device="cpu"))
    print(f"model {args.model} ({args.dtype}), adapter {args.adapter}, {torch.get_num_threads()} CPU threads, "
          f"batch size {args.batch_size}, {args.limit} test items per task\n")
    selected = selected_test_items(args.tasks, args.limit)

    def unmerged(items):
        base = lm.model
        lm.model = load_adapter(base, args.adapter).eval()
        try:
            return timed_scores(lm, items, args.batch_size)
        finally:
            lm.model = lm.model.unload().eval()

    def merged(items):
        with applied_adapter(lm, args.adapter):
            return timed_scores(lm, items, args.batch_size)

    print_comparison(selected, "unmerged", "merged", unmerged, merged)

if __name__ == "__main__":
    main()
