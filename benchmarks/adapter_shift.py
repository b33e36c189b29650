"""What a zero-label adapter does to a held-out task: does it lower the gold answer's loss, separate the gold
option from the others, and how far does it move the model's reading of the task's text?

For each leave-one-out fold of `benchmarks/generator_heldout.py --protocol loo` and each adapter of that fold
(union LoRA, union-matched, every generated mode), on the first `--items` test items of the fold's task:

    answer loss   mean cross-entropy of the gold answer's tokens (what fine-tuning and the `answer` task
                  loss lower)
    choice loss   cross-entropy of the gold option against the item's options, each scored by its mean
                  answer-token log-likelihood (what accuracy rewards; the `choice` task loss)
    context KL    KL from the base model to the adapted one at the positions that predict context tokens,
                  nats per position (what the generator's `anchor` charges for)

The base model's row has KL 0 by definition. bf16 base model; each figure is the item-weighted mean over
batches of `--batch` items.

    python benchmarks/adapter_shift.py --heldout runs/heldout --tasks piqa,hellaswag,winogrande,boolq
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from degaml.config import ModelConfig
from degaml.data.prompts import task_items
from degaml.generator.card import GeneratorCard
from degaml.generator.function_space import AdapterLoss, choice_example, collate_choices
from degaml.models import load_model, lora_state, peft_model, read_lora_state
from degaml.sft import collate


def fold_adapters(heldout: Path, task: str) -> dict[str, Path]:
    fold = heldout / "loo" / task / "adapters"
    found = {name: fold / name for name in ("union", "union-matched") if (fold / name).is_dir()}
    for generated in sorted(fold.glob("gen:*")):
        if (generated / task).is_dir():
            found[generated.name] = generated / task
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", type=Path, default=Path("runs/heldout"))
    parser.add_argument("--tasks", default="arc_challenge,arc_easy,hellaswag,boolq,piqa,winogrande")
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max_tokens", type=int, default=128)
    args = parser.parse_args()
    generators = sorted((args.heldout / "generators").iterdir())
    if not generators:
        raise FileNotFoundError(f"{args.heldout}/generators holds no generator (run generator_heldout.py first)")
    card = GeneratorCard.load(generators[0])
    lm = load_model(ModelConfig(name=card.model, dtype="bfloat16"))
    with peft_model(lm, card.lora) as model:
        base_state = lora_state(model)  # B = 0: the base model
    loss = AdapterLoss(lm, card.lora, anchor=1.0)
    print(f"first {args.items} test items per task\n")
    print("| task | adapter | answer loss | choice loss | context KL |\n|---|---|---|---|---|")
    try:
        for task in args.tasks.split(","):
            examples = [choice_example(lm, item, args.max_tokens) for item in task_items(task, "test")[:args.items]]
            chunks = [examples[i:i + args.batch] for i in range(0, len(examples), args.batch)]
            for name, state in {"base": base_state, **{n: read_lora_state(p) for n, p in
                                                         fold_adapters(args.heldout, task).items()}}.items():
                answer = choice = kl = 0.0
                with torch.no_grad():
                    for chunk in chunks:
                        gold = collate([e.options[e.gold] for e in chunk], lm.tokenizer.pad_token_id)
                        terms = loss.terms(state, {k: v.to(lm.device) for k, v in gold.items()})
                        answer += float(terms["task_loss"]) * len(chunk)
                        kl += float(terms["anchor"]) * len(chunk)
                        choice += float(loss.terms(state, collate_choices(lm, chunk))["task_loss"]) * len(chunk)
                n = len(examples)
                print(f"| {task} | {name} | {answer / n:.3f} | {choice / n:.3f} | {kl / n:.3f} |", flush=True)
    finally:
        loss.close()


if __name__ == "__main__":
    main()
