"""Our log-likelihood scorer against lm-evaluation-harness, in one run on the same model, items and CPU.

Both score the same (context, continuation) requests built from the same task items; the harness is
called through its own `HFLM.loglikelihood`, so its tokenization, batching and scoring are its own.
Prints per task: identical predictions (acc and acc_norm), the largest log-likelihood difference,
and items/s of each with the ratio.

    python -m benchmarks.eval_throughput --limit 50 --tasks arc_easy,hellaswag,boolq,winogrande
"""

from __future__ import annotations

import argparse
import time

from benchmarks.agreement import machine_line, print_comparison, timed_scores
from degaml.config import DataConfig, ModelConfig
from degaml.data.prompts import load_partitioned
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
    data = DataConfig(tasks=args.tasks.split(","), split="test", limit=args.limit)

    print(f"model {args.model}, batch size {args.batch_size}, {args.limit} test items per task, lm-eval "
          f"{__import__('lm_eval').__version__}\n{machine_line(lm)}\n")
    selected = {task: part.select(items, "test", args.limit) for task, (items, part) in load_partitioned(data).items()}

    def theirs(items):
        start = time.perf_counter()
        return harness_scores(harness, items), time.perf_counter() - start

    print_comparison(selected, "lm-eval", "ours", theirs, lambda items: timed_scores(lm, items, args.batch_size))

if __name__ == "__main__":
    main()
