"""The demo's work, plain Python and tested without a browser: `DemoSession` turns pasted prompts into an adapter
(one forward pass of the generator), the option probabilities and greedy answers under base and adapted model,
and a zipped download; `render_answers` draws them as HTML that wraps at any width. The page and the command
are `degaml/demo.py`."""

from __future__ import annotations

import html
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from .data import MultipleChoiceItem
from .data.files import check_prompts, default_context

if TYPE_CHECKING:
    from .generator.generation import Generator
    from .models import LoadedModel


def split_prompts(text: str) -> list[str]:
    """The prompts of a pasted text: blocks separated by one or more blank lines (a prompt may span lines)."""
    return [block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()]


_OPTION = re.compile(r"^\s*\(?([A-Z])[:.)]\s+(.+?)\s*$")


def lettered_item(prompt: str) -> MultipleChoiceItem | None:
    """A prompt whose last lines are lettered options ("A: text", "A. text", "(A) text", from A in order) as a
    multiple-choice item scored as the evaluation scores one (each option's text after "Question: ...
    Answer:"); None for a prompt without at least two such options."""
    lines = prompt.strip().splitlines()
    split = len(lines)
    while split > 0 and _OPTION.match(lines[split - 1]):
        split -= 1
    matches = [_OPTION.match(line) for line in lines[split:]]
    question = "\n".join(lines[:split]).strip()
    letters = [m.group(1) for m in matches if m]
    if len(letters) < 2 or not question or letters != [chr(ord("A") + i) for i in range(len(letters))]:
        return None
    return MultipleChoiceItem.cloze("demo", question, default_context(question), [m.group(2) for m in matches if m], 0)


def cut_repetition(text: str) -> str:
    """Greedy text up to the first sentence it repeats ("A mammal is a mammal. A mammal is a mammal ..."), marked
    as cut: small models loop under greedy decoding, and the loop says nothing about the adapter."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    seen: set[str] = set()
    for k, sentence in enumerate(sentences):
        key = sentence.strip().lower()
        if key and key in seen:
            return " ".join(sentences[:k]) + " [repeats; cut]"
        seen.add(key)
    return text.strip()


@dataclass
class OptionRow:
    letter: str
    text: str
    base: float
    """Probability of the option among the item's options under the base model."""
    adapted: float


@dataclass
class DemoResult:
    summary: str
    """Markdown: prompts used, adapter size and norm, generation time."""
    answers: list[list[str]]
    """One row per shown prompt: prompt, base model's answer, adapted model's answer."""
    archive: Path
    """The adapter directory, zipped for download."""
    options: list[list[OptionRow]] = field(default_factory=list)
    """Per shown prompt: its lettered options' probabilities under both models (empty for a prompt without)."""


def option_probabilities(lm: LoadedModel, items: list[MultipleChoiceItem]) -> list[list[float]]:
    """Per item, the softmax over its options of each option's log-likelihood (the `acc` score)."""
    from .evaluation.loglikelihood import LoglikelihoodScorer

    scored = LoglikelihoodScorer(lm).score(items, progress=False) if items else []
    probabilities = []
    for scores in scored:
        top = max(s.logprob for s in scores)
        weights = [math.exp(s.logprob - top) for s in scores]
        probabilities.append([w / sum(weights) for w in weights])
    return probabilities


_STYLE = {  # inline, so the layout holds wherever the HTML is shown
    "list": "display:flex;flex-direction:column;gap:16px;max-width:100%",
    "item": "border:1px solid #ddd;border-radius:8px;padding:12px;min-width:0",
    "prompt": "white-space:pre-wrap;overflow-wrap:anywhere;margin:0 0 8px 0",
    "table": "width:100%;table-layout:fixed;margin-bottom:8px",
    "cell": "overflow-wrap:anywhere",
    "pair": "display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:12px",
    "answer": "white-space:pre-wrap;overflow-wrap:anywhere;margin:0",
}


def render_answers(result: DemoResult) -> str:
    """The answers as HTML: per prompt, its options' probabilities (base, adapted, change) and the two greedy
    answers side by side in two equal columns that wrap, so both fit any window."""
    st = SimpleNamespace(**_STYLE)
    parts = [f'<div class="degaml-answers" style="{st.list}">']
    for k, (prompt, base, adapted) in enumerate(result.answers):
        parts.append(f'<section class="degaml-item" style="{st.item}">'
                     f'<pre class="degaml-prompt" style="{st.prompt}">{html.escape(prompt)}</pre>')
        rows = result.options[k] if k < len(result.options) else []
        if rows:
            parts.append(f'<table class="degaml-options" style="{st.table}"><colgroup><col style="width:52%"><col><col><col>'
                         "</colgroup><thead><tr><th>option</th><th>base model</th><th>with the generated adapter</th><th>change</th></tr></thead><tbody>")
            for row in rows:
                parts.append(f'<tr><td style="{st.cell}">{row.letter}: {html.escape(row.text)}</td>'
                             f"<td>{100 * row.base:.1f}%</td><td>{100 * row.adapted:.1f}%</td>"
                             f"<td>{100 * (row.adapted - row.base):+.1f}</td></tr>")
            parts.append("</tbody></table>")
        parts.append(f'<div class="degaml-pair" style="{st.pair}">'
                     f'<div class="degaml-base" style="min-width:0"><h4>base model</h4>'
                     f'<p style="{st.answer}">{html.escape(base)}</p></div>'
                     f'<div class="degaml-adapted" style="min-width:0"><h4>with the generated adapter</h4>'
                     f'<p style="{st.answer}">{html.escape(adapted)}</p></div></div></section>')
    parts.append("</div>")
    return "".join(parts)


class DemoSession:
    """The demo's work: one generator and its base model, adapters written under `workdir`."""

    def __init__(self, generator: Generator, lm: LoadedModel, workdir: Path, max_new_tokens: int = 48,
                 shown: int = 4) -> None:
        self.generator, self.lm, self.workdir = generator, lm, Path(workdir)
        self.max_new_tokens, self.shown = max_new_tokens, shown

    def run(self, text: str) -> DemoResult:
        from .evaluation.generative import chat_prompt, greedy_completions
        from .models import delta_norm, peft_model, write_adapter

        prompts = check_prompts(split_prompts(text), "the pasted prompts")
        if not prompts:
            raise ValueError("paste at least one prompt (separate prompts with a blank line)")
        state, record = self.generator.generate_state(prompts)
        digest = record.prompts_sha256[:12]
        out = self.workdir / f"adapter-{digest}"
        archive = out.with_suffix(".zip")
        if not archive.is_file():  # the same prompts give the same adapter: written and zipped once
            write_adapter(state, self.generator.lora, self.generator.record.model, out, record.to_info())
            shutil.make_archive(str(out), "zip", out)
        shown = prompts[:self.shown]
        asked = [chat_prompt(self.lm, p) for p in shown]
        items = {k: item for k, p in enumerate(shown) if (item := lettered_item(p)) is not None}
        base = greedy_completions(self.lm, asked, max_new_tokens=self.max_new_tokens, progress=False)
        base_p = option_probabilities(self.lm, list(items.values()))
        with peft_model(self.lm, self.generator.lora, state):
            adapted = greedy_completions(self.lm, asked, max_new_tokens=self.max_new_tokens, progress=False)
            adapted_p = option_probabilities(self.lm, list(items.values()))
        probabilities = dict(zip(items, zip(base_p, adapted_p)))
        options = [[OptionRow(chr(ord("A") + j), text, b, a)
                    for j, (text, b, a) in enumerate(zip(items[k].choices, *probabilities[k]))] if k in items else []
                   for k in range(len(shown))]
        summary = (f"**Adapter** `{out.name}` for `{self.generator.record.model}`: {len(state)} LoRA tensors, "
                   f"norm {delta_norm(state):.3f}, generated in {record.generation_seconds * 1000:.0f} ms from "
                   f"{record.conditioning}; prompts sha256 `{digest}...`.")
        answers = [[p, cut_repetition(b), cut_repetition(a)] for p, b, a in zip(shown, base, adapted)]
        return DemoResult(summary, answers, archive, options)


__all__ = ["DemoResult", "DemoSession", "OptionRow", "cut_repetition", "lettered_item", "option_probabilities",
           "render_answers", "split_prompts"]
