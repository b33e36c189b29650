"""Adapters that live outside degaml: a base model PEFT can resolve, a model card, unmistakable marks on
outputs that are not plain LoRAs."""

import json
from dataclasses import replace

import pytest
import torch
from huggingface_hub import ModelCard

from degaml.config import LoraSettings
from degaml.io import cache_root
from degaml.models import AdaptedOutput, write_adapter, write_ensemble
from degaml.models.generation_record import GenerationRecord
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


def _generated(**changes) -> dict:
    """A generated adapter's degaml.json record (GenerationRecord's keys)."""
    record = GenerationRecord(generator="gens/g", prompts_given=16, prompts_used=16, prompts_sha256="ab" * 32,
                              sampled_with_replacement=False, seed=0, encode_seconds=0.1, decode_seconds=0.2,
                              generation_seconds=0.3)
    return replace(record, **changes).to_info()


def test_every_adapter_has_a_model_card_and_a_resolvable_base(tmp_path):
    out = write_adapter(STATE, LORA, "smollm2-135m-instruct", tmp_path / "a", _generated())
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.library_name == "peft"
    assert card.data.license == "apache-2.0" and "degaml" in card.data.tags
    assert "ab" * 32 in card.text and "Not a plain LoRA" not in card.text
    assert AdaptedOutput.load(out).base_model == "smollm2-135m-instruct"  # what degaml loads offline


def test_the_card_names_the_task_the_true_prompt_count_and_no_local_path(tmp_path):
    info = {**_generated(task="arc_easy", generator="/home/someone/runs/gen", prompts_given=3,
                         sampled_with_replacement=True, prompts_sha256="cd" * 32), "prompts_from": "/home/someone/p.txt"}
    out = write_adapter(STATE, LORA, str(tmp_path), tmp_path / "a", info)  # a local base model directory
    text = (out / "README.md").read_text()
    assert "for the task `arc_easy`" in text
    assert "the 3 unlabelled prompts given, drawn with replacement to fill the generator's 16 prompt slots" in text
    assert "16 of 3" not in text
    assert "/home/someone" not in text and str(tmp_path) not in text
    assert "`gen (a local path)`" in text
    plain = write_adapter(STATE, LORA, "smollm2-135m-instruct", tmp_path / "b",
                          _generated(prompts_given=40, prompts_sha256="ef" * 32))
    assert "conditioned on 16 of the 40 unlabelled prompts given" in (plain / "README.md").read_text()


def test_a_generation_record_round_trips_and_a_cut_one_is_refused_by_name():
    info = _generated(task="arc_easy")
    assert GenerationRecord.from_info({**info, "action": {"family": "ttt"}}).to_info() == info
    assert GenerationRecord.from_info({"baseline": "union"}) is None  # not a generated adapter
    with pytest.raises(ValueError, match="lacks seed"):
        GenerationRecord.from_info({k: v for k, v in info.items() if k != "seed"})


def test_what_interop_says_of_peft_holds_offline(tmp_path, workspace, monkeypatch):
    """docs/interop.md: PeftModel.from_pretrained(base, adapter) loads any adapter offline; AutoPeftModelForCausalLM
    loads one whose adapter_config names a local base directory, and for an offline default it resolves the hub
    id of the original weights, which needs the hub (or that model in the Hugging Face cache)."""
    import huggingface_hub
    import pytest
    from peft import AutoPeftModelForCausalLM, PeftModel, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from degaml.models.lora import peft_config

    model_dir = workspace["model"]
    lora = LoraSettings(r=2, alpha=4)
    attached = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), peft_config(lora))
    state = {k: torch.full_like(v, 0.01) for k, v in get_peft_model_state_dict(attached).items()}
    local = write_adapter(state, lora, model_dir, tmp_path / "local")
    loaded = AutoPeftModelForCausalLM.from_pretrained(str(local))  # offline: the base is a local directory
    assert isinstance(loaded, PeftModel)
    assert PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), str(local)) is not None
    named = write_adapter(state, lora, "smollm2-135m-instruct", tmp_path / "named")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: set it here
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    with pytest.raises(OSError):
        AutoPeftModelForCausalLM.from_pretrained(str(named))  # the hub id of the original weights


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


def test_a_model_in_raw_data_part_packages_is_joined_in_order_and_checked(tmp_path, monkeypatch):
    import hashlib

    import pytest

    from degaml.models.registry import OfflineModel, join_parts

    chunks = [b"GGUF" + bytes(range(50)), b"second part", b"third"]
    for number, chunk in enumerate(chunks, start=1):  # packages that are never imported: only data files
        data = tmp_path / "site" / f"fakeparts_{number}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("raise RuntimeError('imported')\n")
        (data / f"part{number:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    from degaml import assets

    for number in range(1, 4):  # pinned as the real part packages are
        module = f"fakeparts_{number}"
        monkeypatch.setitem(assets.BY_MODULE, module, assets.DataPackage(f"fakeparts-{number}", "1.0", module))
    monkeypatch.setattr(assets.metadata, "version", lambda distribution: "1.0")
    joined = b"".join(chunks)
    model = OfflineModel(name="fake", description="", package="fakeparts_1", gguf_file="fake.gguf", licence="",
                         hub_id="org/fake", parts=("fakeparts_1", "fakeparts_2", "fakeparts_3"),
                         sha256=hashlib.sha256(joined).hexdigest())
    out = join_parts(model, tmp_path / "fake.gguf")
    assert out.read_bytes() == joined
    wrong = OfflineModel(**{**model.__dict__, "parts": ("fakeparts_2", "fakeparts_1", "fakeparts_3")})
    with pytest.raises(FileNotFoundError, match="part 1 of fake is missing"):
        join_parts(wrong, tmp_path / "wrong.gguf")
    assert not (tmp_path / "wrong.gguf").exists()
    tampered = OfflineModel(**{**model.__dict__, "sha256": "0" * 64})
    with pytest.raises(ValueError, match="not the pinned"):
        join_parts(tampered, tmp_path / "tampered.gguf")
    assert not (tmp_path / "tampered.gguf").exists()
