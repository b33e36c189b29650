"""Tiny, randomly initialized models and an in-memory tokenizer: the unit tests need no downloads."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from degaml.models import LoadedModel

CORPUS = [
    "Question: Which gas do plants absorb from the air?\nAnswer: carbon dioxide",
    "The quick brown fox jumps over the lazy dog. A man is sitting on a roof. He starts pulling up roofing.",
    "Sarah was a much better surgeon than Maria so she always got the easier cases.",
    "does ethanol take more energy to make than it produces? no yes true false",
    "4 * 8 = 32. 47 + 12 = 59. def add(a, b): return a + b",
] * 20


@pytest.fixture(autouse=True)
def _private_trajectory_cache(request, tmp_path, monkeypatch):
    """Unit tests collect into their own cache: tiny models of one name differ between tests. Real-model tests
    (`slow`) keep the user's cache, where the converted weights are."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("DEGAML_CACHE", str(tmp_path / "degaml-cache"))


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    # Byte-level BPE, like GPT-2 / Llama-3 / Qwen: spaces are part of the following token, which is what
    # the harness's context/continuation split has to get right.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    return fast


def _tiny_config(kind: str, vocab_size: int):
    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaConfig(**common) if kind == "llama" else Qwen2Config(**common)


def make_tiny(kind: str, tokenizer, seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    config = _tiny_config(kind, len(tokenizer))
    model = (LlamaForCausalLM if kind == "llama" else Qwen2ForCausalLM)(config).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, add_special_tokens=True, source=f"tiny-{kind}")


@pytest.fixture(params=["llama", "qwen2"])
def tiny_lm(request, tokenizer) -> LoadedModel:
    return make_tiny(request.param, tokenizer)


@pytest.fixture(scope="session")
def tiny_sentence_transformer(tmp_path_factory):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny_st")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + ["which", "gas", "do", "plants", "absorb", "the", "a", "an", "answer", "is"]
    (path / "vocab.txt").write_text("\n".join(words))
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(path)
    transformer = Transformer(str(path))
    st = SentenceTransformer(modules=[transformer, Pooling(16)])
    st.save(str(path / "st"))
    return path / "st"


QUESTIONS = {
    "colors": [(f"What color is item {i}?", ["red", "blue", "green"], i % 3) for i in range(30)],
    "numbers": [(f"What is {i} plus one?", [str(i + 1), str(i + 5)], 0) for i in range(30)],
}


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, tokenizer, tiny_sentence_transformer):
    root = tmp_path_factory.mktemp("workspace")
    lm = make_tiny("llama", tokenizer)
    lm.model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    tasks = []
    for name, rows in QUESTIONS.items():
        path = root / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"question": q, "choices": c, "gold": g}) + "\n" for q, c, g in rows))
        tasks.append(str(path))
    return {"root": root, "model": str(root / "model"), "tasks": tasks, "encoder": str(tiny_sentence_transformer)}




@pytest.fixture(scope="session")
def generator_dir(workspace, tmp_path_factory):
    """A tiny trained generator (`<root>/g`) over the workspace tasks' trajectories (`<root>/t`), made once; its
    trajectory cache is private, like every unit test's."""
    from degaml.cli import main

    root = tmp_path_factory.mktemp("gen")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEGAML_CACHE", str(root / "degaml-cache"))
        main(["collect", "--tasks", ",".join(workspace["tasks"]), "--out", str(root / "t"), "--model.name",
              workspace["model"], "--collect.burn_in_steps", "1", "--collect.checkpoints", "2",
              "--collect.batch_size", "2", "--lora.r", "2", "--lora.alpha", "4", "--model.dtype", "float32",
              "--model.device", "cpu", "--progress", "false"])
        main(["train-generator", "--trajectories", str(root / "t"), "--out", str(root / "g"),
              "--generator.decoder", "cpu-tiny", "--generator.encoder", workspace["encoder"],
              "--generator.num_prompts", "2", "--generator.prompt_tokens", "8", "--generator.chunk", "16",
              "--generator.steps", "1", "--progress", "false"])
    return root
