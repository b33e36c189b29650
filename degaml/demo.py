"""`degaml demo`: a web page (Gradio) for trying a generator by hand. Paste a few unlabelled prompts of a new
task, get the adapter the generator makes from them in one forward pass, see what it changes (for a prompt
with lettered options, each option's probability under the base model and under the adapted one; the two
greedy answers side by side), and download the adapter (a PEFT directory, zipped).

The page's work is `demo_session.DemoSession` (plain Python, tested without a browser, and kept apart so
that this module, whose `demo` is the command, builds its `--help` without torch); `build_demo` lays the page
out, and `tests/test_demo.py` drives it in headless Chromium, checking that the adapted column is on screen.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .config import ModelConfig
from .demo_session import DemoSession, render_answers

EXAMPLE_PROMPTS = """Which gas do plants take in for photosynthesis?
A: oxygen
B: carbon dioxide

What force pulls objects toward the Earth?
A: magnetism
B: gravity

Which of these is a mammal?
A: shark
B: dolphin"""


def build_demo(session: DemoSession):
    """The page: prompts in; the adapter's summary, what it changes (option probabilities, answers side by
    side) and the download out."""
    import gradio as gr

    def on_click(text: str):
        try:
            result = session.run(text)
        except ValueError as e:
            raise gr.Error(str(e)) from e
        return result.summary, render_answers(result), str(result.archive)

    with gr.Blocks(title="degaml: prompts to LoRA") as page:
        gr.Markdown(f"# degaml: a LoRA adapter from a task's prompts\nGenerator `{session.generator.directory.name}`, "
                    f"base model `{session.generator.record.model}`. Paste a few unlabelled prompts of a new task, "
                    "separated by blank lines. For a prompt with lettered options (A: ..., B: ...), the page "
                    "shows each option's probability under the base model and under the adapted one: that is "
                    "what the adapter changes. The greedy answers below them are cut where they start to repeat.")
        prompts = gr.Textbox(label="Prompts", value=EXAMPLE_PROMPTS, lines=12, elem_id="prompts")
        button = gr.Button("Generate adapter", variant="primary", elem_id="generate")
        summary = gr.Markdown(elem_id="summary")
        answers = gr.HTML(elem_id="answers")
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
    with tempfile.TemporaryDirectory(prefix="degaml-demo-") as workdir:  # removed when the server stops
        print(f"adapters are written under {workdir} (removed on exit)")
        build_demo(DemoSession(gen, lm, Path(workdir), max_new_tokens)).launch(
            server_name=host, server_port=port, share=share)


__all__ = ["build_demo", "demo"]
