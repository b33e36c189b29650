"""Does scoring in bfloat16 change any prediction? The same test items scored by the same model loaded in
float32 and in bfloat16 (bare, or with an adapter), in one run on the same CPU.

Prints per task: the accuracy under each dtype, how many items get the same prediction (acc and acc_norm),
the largest log-likelihood difference, and items/s of each with the ratio.

    python -m benchmarks.dtype_agreement --limit 100
    python -m benchmarks.dtype_agreement --limit 100 --adapter runs/offline-default/seed_0/folds/shared/residual_base
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from benchmarks.agreement import agreement, machine_line, scoring_parser, selected_test_items, timed_scores
from degaml.config import ModelConfig
from degaml.evaluation import predict_acc, predict_acc_norm
from degaml.evaluation.harness import normalization_texts
from degaml.evaluation.output_scoring import applied_adapter
from degaml.models import load_model


def percent_correct(predictions: list[int], items) -> str:
    return f"{100 * sum(p == it.gold for p, it in zip(predictions, items)) / len(items):.1f}"


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.add_argument("--adapter", type=Path, default=None, help="a PEFT adapter directory; none: the base model")
    args = parser.parse_args()

    models = {dtype: load_model(ModelConfig(name=args.model, dtype=dtype, device="cpu"))
              for dtype in ("float32", "bfloat16")}
    print(f"model {args.model}, adapter {args.adapter or 'none'}, batch size {args.batch_size}, {args.limit} test "
          f"items per task\n{machine_line()}\n")
    print("| task | items | acc fp32 | acc bf16 | same acc preds | acc_norm fp32 | acc_norm bf16 | same acc_norm preds "
          "| max abs Δ loglik | fp32 items/s | bf16 items/s | speed-up |")
    print("|---" * 12 + "|")
    totals = {"float32": 0.0, "bfloat16": 0.0, "items": 0, "same_acc": 0, "same_norm": 0}
    for task, selected in selected_test_items(args.tasks, args.limit).items():
        scores, seconds = {}, {}
        for dtype, lm in models.items():
            with applied_adapter(lm, args.adapter) if args.adapter else nullcontext():
                scores[dtype], seconds[dtype] = timed_scores(lm, selected, args.batch_size)
        acc = {d: percent_correct([predict_acc(s) for s in rows], selected) for d, rows in scores.items()}
        norm = {d: percent_correct([predict_acc_norm(s, normalization_texts(it)) for s, it in zip(rows, selected)],
                                   selected) for d, rows in scores.items()}
        n = len(selected)
        same_acc, same_norm, delta = agreement(selected, scores["float32"], scores["bfloat16"])
        for key, value in (("float32", seconds["float32"]), ("bfloat16", seconds["bfloat16"]), ("items", n),
                           ("same_acc", same_acc), ("same_norm", same_norm)):
            totals[key] += value
        print(f"| {task} | {n} | {acc['float32']} | {acc['bfloat16']} | {same_acc}/{n} "
              f"| {norm['float32']} | {norm['bfloat16']} | {same_norm}/{n} | {delta:.2e} "
              f"| {n / seconds['float32']:.1f} | {n / seconds['bfloat16']:.1f} "
              f"| {seconds['float32'] / seconds['bfloat16']:.2f}x |", flush=True)
    n = totals["items"]
    print(f"| all | {n} | | | {totals['same_acc']}/{n} | | | {totals['same_norm']}/{n} | "
          f"| {n / totals['float32']:.1f} | {n / totals['bfloat16']:.1f} "
          f"| {totals['float32'] / totals['bfloat16']:.2f}x |")


if __name__ == "__main__":
    main()
