"""The web demo (`degaml/demo.py`, its work in `degaml/demo_session.py`): its work on a tiny generator, and the page in a real headless Chromium."""

from __future__ import annotations

import io
import shutil
import socket
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from degaml.config import ModelConfig
from degaml.demo import build_demo
from degaml.demo_session import (
    DemoResult,
    DemoSession,
    OptionRow,
    cut_repetition,
    lettered_item,
    render_answers,
    split_prompts,
)
from degaml.evaluation.loglikelihood import LoglikelihoodScorer
from degaml.generator.generation import Generator
from degaml.models import load_model, read_lora_state

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def session(workspace, generator_dir, tmp_path_factory):
    gen = Generator(generator_dir / "g")
    lm = load_model(ModelConfig(name=workspace["model"], dtype="float32", device="cpu"))
    return DemoSession(gen, lm, tmp_path_factory.mktemp("demo"), max_new_tokens=4, shown=2)


def test_prompts_are_blank_line_separated_blocks():
    assert split_prompts("a\nA: x\n\n\n  \nb\n\nc  ") == ["a\nA: x", "b", "c"]
    assert split_prompts(" \n\n ") == []


def test_lettered_options_become_an_item_scored_as_the_evaluation_scores_one():
    item = lettered_item("Which gas do plants take in?\nA: oxygen\nB: carbon dioxide")
    assert item.question == "Which gas do plants take in?" and item.choices == ("oxygen", "carbon dioxide")
    assert item.contexts == ("Question: Which gas do plants take in?\nAnswer:",) * 2
    assert item.continuations == (" oxygen", " carbon dioxide")
    assert lettered_item("Pick one.\n(A) red\n(B) blue\n(C) green").choices == ("red", "blue", "green")
    assert lettered_item("What is 3 plus one?") is None
    assert lettered_item("Only one option\nA: x") is None
    assert lettered_item("Out of order\nB: x\nA: y") is None
    assert lettered_item("A: x\nB: y") is None  # options and no question


def test_repeated_sentences_are_cut():
    assert cut_repetition("A mammal is a mammal. A mammal is a mammal. A mammal") == "A mammal is a mammal. [repeats; cut]"
    assert cut_repetition("  Dolphins. They breathe air.  ") == "Dolphins. They breathe air."


def test_the_answers_render_escaped_side_by_side_with_option_probabilities(tmp_path):
    result = DemoResult("s", [["Pick <b>\nA: x\nB: y", "base <i>", "adapted"]], tmp_path / "a.zip",
                        [[OptionRow("A", "x", 0.25, 0.75), OptionRow("B", "y", 0.75, 0.25)]])
    page = render_answers(result)
    assert "&lt;b&gt;" in page and "<b>" not in page and "base &lt;i&gt;" in page
    assert "25.0%" in page and "75.0%" in page and "+50.0" in page and "-50.0" in page
    assert "grid-template-columns:minmax(0,1fr) minmax(0,1fr)" in page and "overflow-wrap:anywhere" in page


def test_lettered_prompts_get_option_probabilities_under_both_models(session):
    result = session.run("What color is item 1?\nA: red\nB: blue\n\nWhat is 3 plus one?")
    first, second = result.options
    assert [row.letter for row in first] == ["A", "B"] and [row.text for row in first] == ["red", "blue"]
    assert sum(row.base for row in first) == pytest.approx(1.0) and sum(row.adapted for row in first) == pytest.approx(1.0)
    assert second == []  # no options, no probabilities
    item = lettered_item("What color is item 1?\nA: red\nB: blue")
    logprobs = [s.logprob for s in LoglikelihoodScorer(session.lm).score([item], progress=False)[0]]
    expected = torch.softmax(torch.tensor(logprobs), 0)
    assert [row.base for row in first] == pytest.approx(expected.tolist(), abs=1e-5)


def test_the_demo_command_removes_its_temporary_folder_when_the_server_stops(monkeypatch, workspace, generator_dir):
    import degaml.demo as demo_module

    seen = {}

    class Page:
        def launch(self, **kwargs):
            seen["workdir"] = session_seen["session"].workdir
            assert seen["workdir"].is_dir()
            raise KeyboardInterrupt  # the user stops the server

    session_seen = {}

    def fake_build(session):
        session_seen["session"] = session
        return Page()

    monkeypatch.setattr(demo_module, "build_demo", fake_build)
    with pytest.raises(KeyboardInterrupt):
        demo_module.demo(str(generator_dir / "g"), ModelConfig(name=workspace["model"], dtype="float32", device="cpu"))
    assert not seen["workdir"].exists()


def test_the_session_gives_the_adapter_the_answers_and_the_archive(session):
    text = "What color is item 1?\nA: red\nB: blue\n\nWhat is 3 plus one?\n\nWhat color is item 2?"
    result = session.run(text)
    assert [row[0] for row in result.answers] == split_prompts(text)[:2]
    assert all(len(row) == 3 for row in result.answers)
    expected, _ = session.generator.generate_state(split_prompts(text))
    with zipfile.ZipFile(result.archive) as archive:
        names = set(archive.namelist())
        assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "degaml.json"} <= names
        unpacked = result.archive.parent / "unpacked"
        archive.extractall(unpacked)
    saved = read_lora_state(unpacked)
    assert saved.keys() == expected.keys()
    assert all(torch.allclose(saved[k], expected[k]) for k in expected)  # the download is the generated adapter
    assert f"{len(expected)} LoRA tensors" in result.summary


def test_the_adapted_answers_come_from_the_adapter(session, monkeypatch):
    """The tiny generator's adapter is near zero, so it is scaled up here: the adapted column then differs from
    the base column, which a session that answered with the base model twice would not show."""
    original = session.generator.generate_state

    def loud(prompts, seed=0, target_geometry=None):
        state, info = original(prompts, seed, target_geometry)
        return {k: v * 50 for k, v in state.items()}, replace(info, prompts_sha256="f" * 64)

    monkeypatch.setattr(session.generator, "generate_state", loud)
    result = session.run("What color is item 1?\n\nWhat is 3 plus one?")
    assert any(base != adapted for _, base, adapted in result.answers)


def test_no_prompts_is_a_clear_error(session):
    with pytest.raises(ValueError, match="paste at least one prompt"):
        session.run("\n\n")


def test_without_gradio_the_command_says_what_to_install(monkeypatch, capsys, tmp_path):
    import sys

    from degaml.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # as if not installed
    with pytest.raises(SystemExit):
        main(["demo", "--generator", str(tmp_path)])
    assert "pip install 'degaml[demo]'" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium)")
def test_the_page_in_headless_chromium(session, tmp_path):
    """Type prompts, click, read the side-by-side answers and the download link, and check the screenshot."""
    playwright = pytest.importorskip("playwright.sync_api")
    from PIL import Image

    port = _free_port()
    page_app = build_demo(session)
    page_app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            long_option = "a very long answer option " * 40
            page.locator("#prompts textarea").fill(f"What color is item 1?\nA: red\nB: {long_option}\n\n"
                                                   "What is 3 plus one?")
            page.locator("#generate").click()
            page.locator("#summary").get_by_text("LoRA tensors").wait_for(timeout=60_000)
            table = page.locator("#answers").inner_text()
            assert "What color is item 1?" in table and "with the generated adapter" in table
            assert "%" in page.locator("#answers .degaml-options").first.inner_text()  # option probabilities
            link = page.locator("#download a").first
            link.wait_for(timeout=30_000)
            assert link.get_attribute("href").endswith(".zip")
            shot = page.screenshot(full_page=True)
            # Both answers side by side inside the window at common widths: the adapted column's box lies in the
            # viewport, to the right of the base column's.
            for width in (1280, 1920, 900):
                page.set_viewport_size({"width": width, "height": 1000})
                page.wait_for_timeout(300)
                adapted = page.locator("#answers .degaml-adapted").first.bounding_box()
                base = page.locator("#answers .degaml-base").first.bounding_box()
                assert adapted["x"] >= 0 and adapted["x"] + adapted["width"] <= width, (width, adapted)
                assert base["x"] + base["width"] <= adapted["x"] + 1, (width, base, adapted)
                options = page.locator("#answers .degaml-options").first.bounding_box()
                assert options["x"] + options["width"] <= width, (width, options)
            browser.close()
    finally:
        page_app.close()
    (tmp_path / "demo.png").write_bytes(shot)
    image = Image.open(io.BytesIO(shot)).convert("L")
    assert image.width == 1200 and image.height >= 600
    # A rendered page, not a blank one: many grey levels, and dark text on the light background.
    histogram = image.histogram()
    assert sum(1 for count in histogram if count) > 20
    assert sum(histogram[:100]) > 500
    assert Path(tmp_path / "demo.png").stat().st_size > 10_000
