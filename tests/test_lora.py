import json

import pytest
import torch
from peft import PeftModel

from degaml.config import LoraSettings
from degaml.models import (
    AdapterMismatchError,
    LoraGeometry,
    attach_lora,
    load_adapter,
    lora_state,
    write_adapter,
)
from tests.conftest import make_tiny


def _randomize_lora(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_geometry_lists_every_target_projection(tiny_lm):
    geometry = LoraGeometry.from_model(tiny_lm.model, LoraSettings(r=4))
    assert geometry.num_layers == 2 and len(geometry.modules) == 2 * 7
    q = geometry.by_path()["model.layers.0.self_attn.q_proj"]
    assert (q.in_features, q.out_features, q.a_shape, q.b_shape) == (32, 32, (4, 32), (32, 4))
    k = geometry.by_path()["model.layers.0.self_attn.k_proj"]
    assert k.out_features == 16  # 2 KV heads x head_dim 8
    assert geometry.num_parameters == sum(4 * (m.in_features + m.out_features) for m in geometry.modules)


def test_geometry_from_config_matches_qwen25_05b_without_weights():
    from transformers import Qwen2Config

    config = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)
    geometry = LoraGeometry.from_config(config, LoraSettings(r=8))
    by = {m.kind: m for m in geometry.modules if m.layer == 0}
    assert geometry.num_layers == 24
    assert (by["k_proj"].out_features, by["down_proj"].in_features) == (128, 4864)
    # By hand, per layer: q,o 2*896; k,v 896+128; gate,up,down 896+4864 -> 22,912 x r 8 x 24 layers.
    assert geometry.num_parameters == 22_912 * 8 * 24 == 4_399_104


def _written_adapter(tokenizer, out):
    """A tiny model with a random LoRA attached, written to `out`; returns (lm, peft model, input, logits)."""
    lm = make_tiny("llama", tokenizer)
    peft_model = attach_lora(lm.model, LoraSettings(r=4))
    _randomize_lora(peft_model)
    x = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        expected = peft_model(x).logits
    write_adapter(lora_state(peft_model), LoraSettings(r=4), "tiny", out)
    return lm, peft_model, x, expected


def test_save_load_round_trip_is_exact(tokenizer, tmp_path):
    _, peft_model, x, expected = _written_adapter(tokenizer, tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "adapter").iterdir()}

    fresh = make_tiny("llama", tokenizer)  # same seed: same base weights
    loaded = load_adapter(fresh.model, tmp_path / "adapter")
    assert isinstance(loaded, PeftModel)
    original = {k: v for k, v in peft_model.state_dict().items() if "lora_" in k}
    for key, value in original.items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, expected)


def test_adapter_of_other_geometry_names_module_and_shapes(tokenizer, tmp_path):
    lm = make_tiny("llama", tokenizer)
    write_adapter(lora_state(attach_lora(lm.model, LoraSettings(r=4))), LoraSettings(r=4), "tiny", tmp_path / "adapter")
    from transformers import LlamaConfig, LlamaForCausalLM

    wider = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(AdapterMismatchError, match=r"model.layers.0.self_attn.q_proj' lora_A has shape \(4, 32\), the model needs \(4, 48\)"):
        load_adapter(wider, tmp_path / "adapter")


def test_missing_adapter_files_are_named(tmp_path, tokenizer):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 4, "target_modules": ["q_proj"]}))
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors is missing"):
        load_adapter(make_tiny("llama", tokenizer).model, tmp_path / "adapter")


def test_failed_save_leaves_nothing(tmp_path, tokenizer, monkeypatch):
    from degaml.models import adapted_output as adapted

    state = lora_state(attach_lora(make_tiny("llama", tokenizer).model, LoraSettings(r=4)))

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(adapted, "save_file", explode)
    with pytest.raises(RuntimeError):
        write_adapter(state, LoraSettings(r=4), "tiny", tmp_path / "adapter")
    assert list(tmp_path.iterdir()) == []


def test_delta_geometry_matches_dense_products():
    from degaml.models import delta_cosine, delta_inner, delta_norm, delta_relative_error

    g = torch.Generator().manual_seed(0)

    def state():
        return {f"m{i}.lora_A.weight": torch.randn(3, 5 + i, generator=g) for i in range(2)} | \
               {f"m{i}.lora_B.weight": torch.randn(4 + i, 3, generator=g) for i in range(2)}

    s1, s2 = state(), state()
    dense = [torch.cat([(s[f"m{i}.lora_B.weight"] @ s[f"m{i}.lora_A.weight"]).flatten() for i in range(2)])
             for s in (s1, s2)]
    assert abs(delta_inner(s1, s2) - float(dense[0] @ dense[1])) < 1e-4 * float(dense[0].norm() * dense[1].norm())
    assert abs(delta_norm(s1) - float(dense[0].norm())) < 1e-4 * float(dense[0].norm())
    assert abs(delta_cosine(s1, s2) - float(torch.nn.functional.cosine_similarity(dense[0], dense[1], 0))) < 1e-5
    assert abs(delta_relative_error(s1, s2) - float((dense[0] - dense[1]).norm() / dense[1].norm())) < 1e-4
    assert delta_relative_error(s1, s1) < 1e-6


def _default_adapter(tokenizer, out):
    lm = make_tiny("qwen2", tokenizer)
    model = attach_lora(lm.model, LoraSettings())
    _randomize_lora(model)
    return write_adapter(lora_state(model), LoraSettings(), "tiny", out)


def test_default_adapters_satisfy_vllm(tokenizer, tmp_path):
    from degaml.models.serving import VLLM_RANKS, vllm_problems

    assert LoraSettings().r in VLLM_RANKS
    assert vllm_problems(_default_adapter(tokenizer, tmp_path / "a")) == []


@pytest.mark.parametrize("edit, expected", [
    ({"r": 4}, "r=4 is not a rank vLLM supports"),
    ({"r": 32}, "exceeds max_lora_rank=16"),
    ({"bias": "all"}, "bias is 'all'"),
    ({"use_dora": True}, "does not support DoRA"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save ['lm_head']"),
    ({"target_modules": ["q_proj", "mlp"]}, "target_modules ['mlp']"),
])
def test_vllm_refusals_name_the_field(tokenizer, tmp_path, edit, expected):
    from degaml.models.serving import vllm_problems

    adapter = _default_adapter(tokenizer, tmp_path / "a")
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, **edit}))
    problems = vllm_problems(adapter)
    assert any(expected in p for p in problems), problems


def test_vllm_refuses_full_weights_and_integer_tensors(tokenizer, tmp_path):
    from safetensors.torch import load_file, save_file

    from degaml.models.serving import vllm_problems

    adapter = _default_adapter(tokenizer, tmp_path / "a")
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    first = next(k for k in tensors if "lora_A" in k)
    tensors[first] = tensors[first].to(torch.int32)
    tensors["base_model.model.lm_head.weight"] = torch.zeros(2, 2)
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    problems = vllm_problems(adapter)
    assert any("lm_head.weight" in p for p in problems) and any("torch.int32" in p for p in problems)


def test_scoring_merges_the_adapter_and_leaves_the_base_model_bit_for_bit(tokenizer, tmp_path):
    """`applied_adapter` merges the LoRA into the weights: the same logits as the unmerged adapter (float
    rounding apart), and afterwards every base weight exactly as before, the model bare again."""
    from degaml.evaluation.output_scoring import applied_adapter

    lm, unmerged, x, expected = _written_adapter(tokenizer, tmp_path / "adapter")
    lm.model = unmerged.unload()
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    with torch.no_grad():
        bare = lm.model(x).logits
    with applied_adapter(lm, tmp_path / "adapter"), torch.no_grad():
        assert not isinstance(lm.model, PeftModel) and not any("lora_" in k for k in lm.model.state_dict())
        torch.testing.assert_close(lm.model(x).logits, expected, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(lm.model(x).logits, bare)
    after = lm.model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_attaching_a_lora_leaves_the_base_weights_requires_grad_as_it_found_them(tokenizer, tmp_path):
    """PEFT freezes the weights it wraps and leaves them frozen on unload (CPU generation then ran 4x slower):
    scoring with an adapter merged and training one attached both put the flags back."""
    from degaml.evaluation.output_scoring import applied_adapter
    from degaml.models.lora import peft_model

    lm, unmerged, _, _ = _written_adapter(tokenizer, tmp_path / "adapter")
    lm.model = unmerged.unload()
    lm.model.requires_grad_(True)
    lm.model.get_input_embeddings().weight.requires_grad_(False)  # a mixed state is kept as it is, not made uniform
    before = {name: p.requires_grad for name, p in lm.model.named_parameters()}
    with applied_adapter(lm, tmp_path / "adapter"):
        pass
    assert {name: p.requires_grad for name, p in lm.model.named_parameters()} == before
    with pytest.raises(RuntimeError, match="training failed"), peft_model(lm, LoraSettings(r=2, alpha=4)) as model:
        assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
        raise RuntimeError("training failed")
    assert {name: p.requires_grad for name, p in lm.model.named_parameters()} == before


def test_scoring_leaves_the_base_model_bare_when_the_block_raises(tokenizer, tmp_path):
    from degaml.evaluation.output_scoring import applied_adapter

    lm, unmerged, _, _ = _written_adapter(tokenizer, tmp_path / "adapter")
    lm.model = unmerged.unload()
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    with pytest.raises(RuntimeError, match="scoring failed"), applied_adapter(lm, tmp_path / "adapter"):
        raise RuntimeError("scoring failed")
    after = lm.model.state_dict()
    assert not isinstance(lm.model, PeftModel) and all(torch.equal(after[k], before[k]) for k in before)
