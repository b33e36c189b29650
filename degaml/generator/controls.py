"""Prompt controls: the generator run on prompts that are not the target's. If the target's own prompts steer
the adapter, the adapter they give must beat the one another task's prompts give (`swapped`) and the one
random text gives (`random`, Text-to-LoRA's ablation with random strings); otherwise the generator produces
one adapter whatever it reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence

CONTROLS = ("swapped", "random")


def partner(target: str, targets: Sequence[str]) -> str:
    """The target whose prompts stand in for `target`'s under `swapped`: the next one of `targets`, cyclically
    (a derangement: no target is its own partner)."""
    if len(targets) < 2:
        raise ValueError(f"prompt control `swapped` needs at least two targets to swap prompts between, got {list(targets)}")
    return targets[(list(targets).index(target) + 1) % len(targets)]


def random_prompts(prompts: Sequence[str], tokenizer, seed: int) -> list[str]:
    """For each prompt, text of as many tokens drawn uniformly from the tokenizer's ordinary vocabulary
    (seeded): the length of the target's prompts, none of their content."""
    import torch  # here, not at the top: a run's settings read `CONTROLS` without loading torch

    rng = torch.Generator().manual_seed(seed)
    special = set(tokenizer.all_special_ids)
    vocabulary = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
    out = []
    for prompt in prompts:
        length = max(len(tokenizer(prompt, add_special_tokens=False).input_ids), 1)
        ids = vocabulary[torch.randint(len(vocabulary), (length,), generator=rng)]
        out.append(tokenizer.decode(ids.tolist()))
    return out


def control_prompts(control: str, target: str, targets: Sequence[str], prompts_of: Callable[[str], list[str]],
                    tokenizer, seed: int) -> tuple[str, list[str]]:
    """(where they came from, the prompts) that stand in for `target`'s own under `control`: its partner's
    (`swapped`, as many as the target's own) or random text of the own prompts' lengths (`random`).
    `prompts_of(task)`: a task's unlabelled prompts, in the form the method reads them."""
    own = prompts_of(target)
    if control == "swapped":
        source = partner(target, targets)
        return source, prompts_of(source)[:len(own)]
    if control == "random":
        return "random text", random_prompts(own, tokenizer, seed)
    raise ValueError(f"unknown prompt control {control!r}; known: {', '.join(CONTROLS)}")
