"""How fast does this CPU run the model in float32 and in bfloat16, and which does `dtype: auto` choose?

The same random token batches through the same model loaded in each dtype, in one run: a LoRA training step's
forward + backward (4 x 128 tokens, LoRA r 8 on all seven projections, as collection and the baselines train)
and a scoring forward (16 x 128 tokens, no gradient). Prints seconds per call (median of --repeats, after a
warm-up) and the bf16 / fp32 ratio. On a CPU without native bf16 (AVX2 only) bf16 is emulated and many
times slower; `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` makes an AVX-512 machine dispatch as one.

    python -m benchmarks.dtype_speed
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python -m benchmarks.dtype_speed
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.agreement import machine_line
from degaml.config import LoraSettings, ModelConfig
from degaml.models import attach_lora, load_model
from degaml.models.loading import choose_precision


def seconds(call, repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", default="float32,bfloat16", help="which to time (emulated bf16 takes minutes)")
    args = parser.parse_args()
    dtypes = [d for d in args.dtypes.split(",") if d]
    auto = choose_precision("auto", torch.device("cpu"))
    print(f"{machine_line()}\n`dtype: auto` here: {auto.dtype} ({auto.reason})\n")
    tokens = torch.Generator().manual_seed(0)
    results = {}
    for dtype in dtypes:
        lm = load_model(ModelConfig(name=args.model, dtype=dtype, device="cpu"))
        vocab = lm.model.config.vocab_size
        train_ids = torch.randint(vocab, (4, 128), generator=tokens)
        score_ids = torch.randint(vocab, (16, 128), generator=tokens)
        model = attach_lora(lm.model, LoraSettings())

        def step(model=model, ids=train_ids):
            model(input_ids=ids, labels=ids).loss.backward()

        def score(model=model, ids=score_ids):
            with torch.no_grad():
                model(input_ids=ids)

        results[dtype] = (seconds(step, args.repeats), seconds(score, args.repeats))
        model.unload()
    both = {"float32", "bfloat16"} <= set(results)
    print("| call | " + " | ".join(f"{d} s" for d in results) + (" | bf16 / fp32 |" if both else " |"))
    print("|---|" + "---|" * (len(results) + both))
    for i, call in enumerate(("forward + backward, 4 x 128 tokens (LoRA training step)",
                              "forward, 16 x 128 tokens (scoring)")):
        ratio = f" {results['bfloat16'][i] / results['float32'][i]:.2f}x |" if both else ""
        print(f"| {call} | " + " | ".join(f"{r[i]:.2f}" for r in results.values()) + " |" + ratio)


if __name__ == "__main__":
    main()
