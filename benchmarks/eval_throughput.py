"""Our log-likelihood scorer against lm-evaluation-harness, in one run on the same model, items and CPU.

Both score the same (context, continuation) requests built from the same task items; the harness is
called through its own `HFLM.loglikelihood`, so its tokenization, batching and scoring are its own.
Prints per task: identical predictions (acc and acc_norm), the largest log-likelihood difference,
and items/s of each with the ratio.

    python benchmarks/eval_throughput.py --limit 50 --tasks arc_easy,hellaswag,boolq,winogrande
"""

from __future__ import annotations

import argparse
import time

import torch

from degaml.config import DataConfig, ModelConfig
from degaml.data.prompts import load_partitioned
from degaml.evaluation import LoglikelihoodScorer, predict_acc, predict_acc_norm
from degaml.evaluation.harness import normalization_texts
from degaml.models import load_model


def harness_scores(harness, items) -> list[list[float]]:
    from lm_eval.api.instance import Instance

    requests = [Instance("loglikelihood", doc={}, arguments=(ctx, cont), idx=k)
                for it in items for k, (ctx, cont) in enumerate(zip(it.contexts, it.continuations))]
    flat = [logprob for logprob, _ in harness.loglikelihood(requests, disable_tqdm=True)]
    out, start = [], 0
    for it in items:
        out.append(flat[start:start + len(it.choices)])
        start += len(it.choices)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tasks", default="arc_easy,hellaswag,boolq,winogrande")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16, help="continuations per forward, both scorers")
    parser.add_argument("--dtype", default="float32", help="float32 makes both deterministic and comparable")
    args = parser.parse_args()

    from lm_eval.models.huggingface import HFLM

    lm = load_model(ModelConfig(name=args.model, dtype=args.dtype, device="cpu"))
    harness = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=args.batch_size, device="cpu")
    ours = LoglikelihoodScorer(lm, batch_size=args.batch_size)
    data = DataConfig(tasks=args.tasks.split(","), split="test", limit=args.limit)

    print(f"model {args.model} ({args.dtype}), {torch.get_num_threads()} CPU threads, batch size {args.batch_size}, "
          f"{args.limit} test items per task, lm-eval {__import__('lm_eval').__version__}\n")
    header = ("| task | items | same acc preds | same acc_norm preds | max abs Δ loglik "
              "| ours items/s | lm-eval items/s | ratio |")
    print(header + "\n" + "|---" * 8 + "|")
    totals = {"ours": 0.0, "theirs": 0.0, "items": 0}
    for task, (items, part) in load_partitioned(data).items():
        selected = part.select(items, "test", args.limit)
        ours.score(selected[:2], progress=False)  # warm-up, not timed
        t0 = time.perf_counter()
        our_scores = [[s.logprob for s in row] for row in ours.score(selected, progress=False)]
        t1 = time.perf_counter()
        their_scores = harness_scores(harness, selected)
        t2 = time.perf_counter()
        same_acc = sum(predict_acc(a) == predict_acc(b) for a, b in zip(our_scores, their_scores))
        same_norm = sum(predict_acc_norm(a, normalization_texts(it)) == predict_acc_norm(b, normalization_texts(it))
                        for a, b, it in zip(our_scores, their_scores, selected))
        delta = max(abs(x - y) for a, b in zip(our_scores, their_scores) for x, y in zip(a, b))
        n = len(selected)
        totals["ours"] += t1 - t0
        totals["theirs"] += t2 - t1
        totals["items"] += n
        print(f"| {task} | {n} | {same_acc}/{n} | {same_norm}/{n} | {delta:.2e} | {n / (t1 - t0):.1f} "
              f"| {n / (t2 - t1):.1f} | {(t2 - t1) / (t1 - t0):.2f}x |", flush=True)
    n = totals["items"]
    print(f"| all | {n} | | | | {n / totals['ours']:.1f} | {n / totals['theirs']:.1f} "
          f"| {totals['theirs'] / totals['ours']:.2f}x |")


if __name__ == "__main__":
    main()
