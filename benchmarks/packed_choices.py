"""A choice-level training step with each item's options packed into one row (`degaml/choice.py`, what the
label-free TTT objectives, the supervised choice and the generator's choice loss train on) against one row per
option (what they trained on before): the same items, model and LoRA, in one run on the same CPU.

The step is one test-time-training step of the InfoMax objective: the options' scores, the loss, its backward
pass through a LoRA, with the activations recomputed (as `adaptation/ttt.py` runs it). Prints per task: tokens
run per step by each form, the largest difference of the options' scores and of the loss, and seconds per step
(the median of `--repeats` batches) with the ratio.

    python -m benchmarks.packed_choices --tasks arc_easy,hellaswag,boolq,winogrande --items 4
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks.agreement import machine_line, scoring_parser, selected_test_items
from degaml.choice import answer_logits, choice_example, collate_choices, infomax_loss, option_log_probs
from degaml.choice import option_scores as packed_scores
from degaml.config import LoraSettings, ModelConfig
from degaml.evaluation.loglikelihood import logits_at
from degaml.models import load_model, peft_model
from degaml.sft import collate, recomputed_activations


def row_per_option(lm, examples) -> dict[str, torch.Tensor]:
    """The reference: every option of every item as its own padded row."""
    rows, owner = [], []
    for n, example in enumerate(examples):
        rows += example.options
        owner += [n] * len(example.options)
    batch = collate(rows, lm.tokenizer.pad_token_id)
    keep = torch.zeros_like(batch["labels"], dtype=torch.bool)
    keep[:, :-1] = batch["labels"][:, 1:] != -100  # position t predicts token t + 1
    return {**batch, "keep": keep, "option_item": torch.tensor(owner)}


def row_scores(model, batch) -> torch.Tensor:
    logits = logits_at(model, batch["keep"], input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    targets = batch["labels"][:, 1:][batch["keep"][:, :-1]]
    token_ll = F.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None])[:, 0]
    total = torch.zeros(len(batch["keep"])).index_add(0, batch["keep"].nonzero()[:, 0], token_ll)
    return total / batch["keep"].sum(1)


def timed_step(model, batch, scores_of) -> tuple[torch.Tensor, float, float]:
    """(the options' scores, the InfoMax loss, seconds) of one forward and backward pass."""
    model.zero_grad()
    start = time.perf_counter()
    scores = scores_of(model, batch)
    loss = infomax_loss(option_log_probs(scores, batch["option_item"]))
    loss.backward()
    return scores.detach(), float(loss), time.perf_counter() - start


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.set_defaults(tasks="arc_easy,hellaswag,boolq,winogrande", limit=16)
    parser.add_argument("--items", type=int, default=4, help="items per step (TTT's batch size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    lm = load_model(ModelConfig(name=args.model, dtype=args.dtype, device="cpu"))
    print(f"model {args.model}, {args.items} items per step, median of {args.repeats} steps\n{machine_line(lm)}\n")
    print("| task | tokens, row per option | tokens, packed | max abs Δ score | abs Δ loss | row per option s/step "
          "| packed s/step | speed-up |")
    print("|---" * 8 + "|")
    with peft_model(lm, LoraSettings()) as model, recomputed_activations(model):
        model.train()
        for task, items in selected_test_items(args.tasks, args.limit).items():
            times: dict[str, list[float]] = {"rows": [], "packed": []}
            tokens, score_gap, loss_gap = {"rows": 0, "packed": 0}, 0.0, 0.0
            for r in range(args.repeats):
                examples = [choice_example(lm, it, args.max_tokens) for it in items[r * args.items:(r + 1) * args.items]]
                rows, packed = row_per_option(lm, examples), collate_choices(lm, examples)
                tokens["rows"] += int(rows["attention_mask"].numel())
                tokens["packed"] += int(packed["input_ids"].numel())
                a, loss_a, seconds_a = timed_step(model, rows, row_scores)
                b, loss_b, seconds_b = timed_step(
                    model, packed, lambda m, batch: packed_scores(answer_logits(m, batch), batch))
                times["rows"].append(seconds_a)
                times["packed"].append(seconds_b)
                score_gap = max(score_gap, float((a - b).abs().max()))
                loss_gap = max(loss_gap, abs(loss_a - loss_b))
            slow, fast = statistics.median(times["rows"]), statistics.median(times["packed"])
            print(f"| {task} | {tokens['rows'] // args.repeats} | {tokens['packed'] // args.repeats} | {score_gap:.2e} "
                  f"| {loss_gap:.2e} | {slow:.2f} | {fast:.2f} | {slow / fast:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
