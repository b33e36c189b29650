"""The paper's generative protocol: an instruction, the options as "A: ... B: ...", greedy decoding, and
the first bracketed letter (else the first standalone letter) as the answer. An answer that names no
valid letter counts as wrong and is counted."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ..data import MultipleChoiceItem
from ..models import LoadedModel

SYSTEM_INSTRUCTION = (
    "You are a helpful assistant. Answer the multiple-choice question with the letter of the correct option "
    "in square brackets, for example [A]."
)


def letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def format_question(item: MultipleChoiceItem) -> str:
    options = "\n".join(f"{letter}: {choice}" for letter, choice in zip(letters(len(item.choices)), item.choices))
    return f"{item.question}\n{options}"


def extract_answer(text: str, num_choices: int) -> int | None:
    """Index of the answer in `text`, or None when it names no valid option."""
    valid = "".join(letters(num_choices))
    bracketed = re.search(rf"\[([{valid}])\]", text)
    if bracketed:
        return ord(bracketed.group(1)) - ord("A")
    standalone = re.search(rf"(?<![A-Za-z])([{valid}])(?![A-Za-z])", text)
    return ord(standalone.group(1)) - ord("A") if standalone else None


def answer_text(option: int, num_choices: int) -> str:
    """What a right answer naming `option` looks like: its letter in square brackets."""
    return f"[{letters(num_choices)[option]}]"


def adds_special_tokens(lm: LoadedModel) -> bool:
    """Whether a prompt is tokenized with the tokenizer's special tokens: chat templates already hold them."""
    return lm.add_special_tokens and not lm.tokenizer.chat_template


def chat_prompt(lm: LoadedModel, user: str, system: str | None = None) -> str:
    """`user` (after `system`, if given) in the model's chat template, ready for its reply; plain text for a
    model without one."""
    tok = lm.tokenizer
    if tok.chat_template:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user})
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{system}\n\n{user}\nAnswer:" if system else f"{user}\nAnswer:"


def build_prompt(lm: LoadedModel, item: MultipleChoiceItem) -> str:
    return chat_prompt(lm, format_question(item), SYSTEM_INSTRUCTION)


def greedy_completions(lm: LoadedModel, prompts: Sequence[str], batch_size: int = 8, max_new_tokens: int = 8,
                       progress: bool = True, desc: str = "generating") -> list[str]:
    """The model's greedy continuation of each prompt (already templated), decoded without special tokens."""
    tok = lm.tokenizer
    texts: list[str] = []
    add_special = adds_special_tokens(lm)
    with torch.inference_mode():
        for start in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress, leave=False):
            chunk = list(prompts[start:start + batch_size])
            padding_side, tok.padding_side = tok.padding_side, "left"
            try:
                enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=add_special).to(lm.device)
            finally:
                tok.padding_side = padding_side
            generated = lm.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=tok.pad_token_id)
            texts.extend(tok.batch_decode(generated[:, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return texts


def generate_answers(lm: LoadedModel, items: Sequence[MultipleChoiceItem], batch_size: int = 8,
                     max_new_tokens: int = 8, progress: bool = True, desc: str = "generating"
                     ) -> list[tuple[str, int | None]]:
    """(generated text, parsed answer index or None) per item, greedy."""
    texts = greedy_completions(lm, [build_prompt(lm, item) for item in items], batch_size, max_new_tokens,
                               progress, desc)
    return [(text, extract_answer(text, len(item.choices))) for text, item in zip(texts, items)]
