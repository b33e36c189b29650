"""`degaml demo`: a web page (Gradio) for trying a generator by hand. Paste a few unlabelled prompts of a new
task, get the adapter the generator makes from them in one forward pass, read the base model's and the
adapted model's answers to those prompts side by side, and download the adapter (a PEFT directory, zipped).

The page's work is `DemoSession` (plain Python, tested without a browser); `build_demo` only lays it out, and
`tests/test_demo.py` drives the page in headless Chromium.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import ModelConfig
from .evaluation.generative import chat_prompt, greedy_completions
from .generator.generation import Generator
from .models import LoadedModel, delta_norm, peft_model, write_adapter

EXAMPLE_PROMPTS = """Which gas do plants take in for photosynthesis?
A: oxygen
B: carbon dioxide

What force pulls objects toward the Earth?
A: magnetism
B: gravity

Which of these is a mammal?
A: shark
B: dolphin"""


def split_prompts(text: str) -> list[str]:
    """The prompts of a pasted text: blocks separated by one or more blank lines (a prompt may span lines)."""
    return [block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()]


@dataclass
class DemoResult:
    summary: str
    """Markdown: prompts used, adapter size and norm, generation time."""
    answers: list[list[str]]
    """One row per shown prompt: prompt, base model's answer, adapted model's answer."""
    archive: Path
    """The adapter directory, zipped for download."""


class DemoSession:
    """The demo's work: one generator and its base model, adapters written under `workdir`."""

    def __init__(self, generator: Generator, lm: LoadedModel, workdir: Path, max_new_tokens: int = 48,
                 shown: int = 4) -> None:
        self.generator, self.lm, self.workdir = generator, lm, Path(workdir)
        self.max_new_tokens, self.shown = max_new_tokens, shown

    def run(self, text: str) -> DemoResult:
        prompts = split_prompts(text)
        if not prompts:
            raise ValueError("paste at least one prompt (separate prompts with a blank line)")
        state, info = self.generator.generate_state(prompts)
        digest = info["prompts_sha256"][:12]
        out = self.workdir / f"adapter-{digest}"
        archive = out.with_suffix(".zip")
        if not archive.is_file():  # the same prompts give the same adapter: written and zipped once
            write_adapter(state, self.generator.lora, self.generator.card.model, out, info)
            shutil.make_archive(str(out), "zip", out)
        asked = [chat_prompt(self.lm, p) for p in prompts[:self.shown]]
        base = greedy_completions(self.lm, asked, max_new_tokens=self.max_new_tokens, progress=False)
        with peft_model(self.lm, self.generator.lora, state):
            adapted = greedy_completions(self.lm, asked, max_new_tokens=self.max_new_tokens, progress=False)
        reused = " (fewer than the generator's N: drawn with replacement)" if info["sampled_with_replacement"] else ""
        summary = (f"**Adapter** `{out.name}` for `{self.generator.card.model}`: {len(state)} LoRA tensors, "
                   f"norm {delta_norm(state):.3f}, generated in {info['generation_seconds'] * 1000:.0f} ms from "
                   f"{info['prompts_given']} prompts{reused}; prompts sha256 `{digest}...`.")
        return DemoResult(summary, [[p, b.strip(), a.strip()] for p, b, a in zip(prompts, base, adapted)], archive)


def build_demo(session: DemoSession):
    """The page: prompts in; the adapter's summary, the side-by-side answers and the download out."""
    import gradio as gr

    def on_click(text: str):
        try:
            result = session.run(text)
        except ValueError as e:
            raise gr.Error(str(e)) from e
        return result.summary, result.answers, str(result.archive)

    with gr.Blocks(title="degaml: prompts to LoRA") as page:
        gr.Markdown(f"# degaml: a LoRA adapter from a task's prompts\nGenerator `{session.generator.directory}`, "
                    f"base model `{session.generator.card.model}`. Paste a few unlabelled prompts of a new task, "
                    "separated by blank lines.")
        prompts = gr.Textbox(label="Prompts", value=EXAMPLE_PROMPTS, lines=12, elem_id="prompts")
        button = gr.Button("Generate adapter", variant="primary", elem_id="generate")
        summary = gr.Markdown(elem_id="summary")
        answers = gr.Dataframe(headers=["prompt", "base model", "with the generated adapter"], wrap=True,
                               interactive=False, elem_id="answers")
        download = gr.File(label="Adapter (PEFT directory, zipped)", elem_id="download")
        button.click(on_click, inputs=prompts, outputs=[summary, answers, download])
    return page


def demo(generator: str, model: ModelConfig | None = None, host: str = "127.0.0.1", port: int = 7860,
         share: bool = False, max_new_tokens: int = 48) -> None:
    """Serve a web page where you paste a task's prompts and compare base and adapted answers side by side.

    Args:
        generator: A trained generator directory, or a Hub repository id holding one.
        model: The base model's dtype and device (its name defaults to the generator's).
        host: Interface to listen on (127.0.0.1: this machine only).
        port: Port to listen on.
        share: Ask Gradio for a public link (needs the internet).
        max_new_tokens: Longest answer generated per prompt.
    """
    from .adaptation.commands import load_for_adaptation

    try:
        import gradio  # noqa: F401  (checked before the models load: the page is the point)
    except ModuleNotFoundError:
        raise ModuleNotFoundError("degaml demo needs gradio: pip install 'degaml[demo]'") from None
    gen, lm = load_for_adaptation(generator, model)
    workdir = Path(tempfile.mkdtemp(prefix="degaml-demo-"))
    print(f"adapters are written under {workdir}")
    build_demo(DemoSession(gen, lm, workdir, max_new_tokens)).launch(server_name=host, server_port=port,
                                                                     share=share)


__all__ = ["DemoResult", "DemoSession", "build_demo", "demo", "split_prompts"]
