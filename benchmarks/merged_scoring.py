"""Scoring with the adapter merged into the weights (what evaluation does) against scoring with PEFT's
unmerged LoRA layers: the same items, model and adapter, in one run on the same CPU.

Prints per task: identical predictions (acc and acc_norm), the largest log-likelihood difference, and
items/s of each with the ratio.

    python -m benchmarks.merged_scoring --limit 100        # a seeded random adapter (agreement.random_adapter)
    python -m benchmarks.merged_scoring --adapter runs/offline-default/seed_0/folds/shared/residual_base
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.agreement import (
    machine_line,
    print_comparison,
    random_adapter,
    scoring_parser,
    selected_test_items,
    timed_scores,
)
from degaml.config import ModelConfig
from degaml.evaluation.output_scoring import applied_adapter
from degaml.models import load_adapter, load_model


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.add_argument("--adapter", type=Path, default=None, help="a PEFT adapter directory; none: a seeded "
                                                                     "random one")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    lm = load_model(ModelConfig(name=args.model, dtype=args.dtype, device="cpu"))
    if args.adapter is None:
        args.adapter = random_adapter(args.model, Path(tempfile.mkdtemp()) / "random-adapter")
    print(f"model {args.model}, adapter {args.adapter}, batch size {args.batch_size}, {args.limit} test items per "
          f"task\n{machine_line(lm)}\n")
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
