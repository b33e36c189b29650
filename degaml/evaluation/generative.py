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


def build_prompt(lm: LoadedModel, item: MultipleChoiceItem) -> str:
    tok = lm.tokenizer
    if tok.chat_template:
        messages = [{"role": "system", "content": SYSTEM_INSTRUCTION},
                    {"role": "user", "content": format_question(item)}]
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{SYSTEM_INSTRUCTION}\n\n{format_question(item)}\nAnswer:"


def generate_answers(lm: LoadedModel, items: Sequence[MultipleChoiceItem], batch_size: int = 8,
                     max_new_tokens: int = 8, progress: bool = True, desc: str = "generating"
                     ) -> list[tuple[str, int | None]]:
    """(generated text, parsed answer index or None) per item, greedy."""
    tok = lm.tokenizer
    outputs: list[tuple[str, int | None]] = []
    # Chat templates already contain the special tokens, so nothing more is added for them.
    add_special = lm.add_special_tokens and not tok.chat_template
    with torch.inference_mode():
        for start in tqdm(range(0, len(items), batch_size), desc=desc, disable=not progress, leave=False):
            chunk = items[start:start + batch_size]
            prompts = [build_prompt(lm, item) for item in chunk]
            padding_side, tok.padding_side = tok.padding_side, "left"
            try:
                enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=add_special).to(lm.device)
            finally:
                tok.padding_side = padding_side
            generated = lm.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=tok.pad_token_id)
            texts = tok.batch_decode(generated[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            outputs.extend((text, extract_answer(text, len(item.choices))) for text, item in zip(texts, chunk))
    return outputs
