"""Adapters that live outside degaml: a base model PEFT can resolve, a model card, unmistakable marks on
outputs that are not plain LoRAs."""

import json

import torch
from huggingface_hub import ModelCard

from degaml.config import LoraSettings
from degaml.io import cache_root
from degaml.models import AdaptedOutput, write_adapter, write_ensemble
from degaml.models.registry import base_model_reference

LORA = LoraSettings(r=2, alpha=4)
STATE = {"base_model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(2, 8),
         "base_model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(8, 2)}


def test_an_offline_default_is_named_by_the_hub_model_its_weights_came_from(tmp_path):
    reference, note = base_model_reference("smollm2-135m-instruct")
    assert reference == "HuggingFaceTB/SmolLM2-135M-Instruct" and "dequantized" in note
    assert base_model_reference(str(cache_root() / "models" / "smollm2-135m-instruct"))[0] == reference
    assert base_model_reference("Qwen/Qwen2.5-0.5B-Instruct") == ("Qwen/Qwen2.5-0.5B-Instruct", "")
    local = tmp_path / "model"
    local.mkdir()
    assert base_model_reference(str(local))[0] == str(local.resolve())


def test_every_adapter_has_a_model_card_and_a_resolvable_base(tmp_path):
    out = write_adapter(STATE, LORA, "smollm2-135m-instruct", tmp_path / "a",
                        {"generator": "gens/g", "prompts_given": 16, "prompts_used": 16, "prompts_sha256": "ab" * 32})
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.library_name == "peft"
    assert card.data.license == "apache-2.0" and "degaml" in card.data.tags
    assert "ab" * 32 in card.text and "Not a plain LoRA" not in card.text
    assert AdaptedOutput.load(out).base_model == "smollm2-135m-instruct"  # what degaml loads offline


def test_outputs_that_are_not_plain_loras_say_so(tmp_path):
    latent = write_adapter(STATE, LORA, "smollm2-135m-instruct", tmp_path / "l", {}, latent_delta=torch.zeros(8))
    card = ModelCard.load(latent / "README.md")
    assert "Not a plain LoRA" in card.text and "latent_delta.safetensors" in card.text
    assert card.data.library_name is None and "degaml-latent-task" in card.data.tags
    sample = write_adapter(STATE, LORA, "smollm2-135m-instruct", tmp_path / "s", {"latent": {"scope": "sample"}})
    assert "fits a fresh latent vector per evaluated item" in (sample / "README.md").read_text()
    write_ensemble([(STATE, {}), (STATE, {})], LORA, "smollm2-135m-instruct", tmp_path / "e", "vote", {})
    assert "Not a LoRA: an ensemble" in (tmp_path / "e" / "README.md").read_text()
    assert not (tmp_path / "e" / "adapter_config.json").exists()  # a plain PEFT load of the ensemble fails
