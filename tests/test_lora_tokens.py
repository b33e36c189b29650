import pytest
import torch
from transformers import Qwen2Config

from degaml.config import LoraSettings
from degaml.lora_tokens import TokenLayout, decode_std, detokenize, encode_std, tokenize
from degaml.models import LoraGeometry, attach_lora
from tests.conftest import make_tiny

QWEN25_05B = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)
QWEN25_15B = Qwen2Config(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)


def test_qwen25_05b_token_count_from_geometry_alone():
    layout = TokenLayout.from_geometry(LoraGeometry.from_config(QWEN25_05B, LoraSettings(r=8)), chunk=128)
    assert (layout.num_tokens, layout.token_shape) == (4296, (10, 130))
    assert layout.num_tokens // 24 == 179


def test_qwen25_15b_token_count_from_geometry_alone():
    layout = TokenLayout.from_geometry(LoraGeometry.from_config(QWEN25_15B, LoraSettings(r=16)), chunk=256)
    assert (layout.num_tokens, layout.token_shape) == (4508, (18, 258))


def test_smollm2_135m_token_count_from_geometry_alone():
    from transformers import LlamaConfig

    smollm2 = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                          num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)
    layout = TokenLayout.from_geometry(LoraGeometry.from_config(smollm2, LoraSettings(r=8)), chunk=128)
    # Per layer: q,o 5+5; k,v 5+2 (out 192); up,gate 5+12; down 12+5 -> 85 tokens.
    assert (layout.num_tokens, layout.token_shape) == (2550, (10, 130))
    # 576 = 4 x 128 + 64 and 192 = 128 + 64: nine 576-wide and two 192-wide sides per layer end in a 64-wide chunk.
    assert sum(s.width == 64 for s in layout.slots) == 30 * 11
    assert sum(s.width < 128 for s in layout.slots) == 30 * 11


def test_layer_then_q_k_v_o_up_gate_down_order():
    layout = TokenLayout.from_geometry(LoraGeometry.from_config(QWEN25_05B, LoraSettings(r=8)), chunk=128)
    first_layer = [(s.module.kind, s.part) for s in layout.slots if s.module.layer == 0]
    kinds = list(dict.fromkeys(k for k, _ in first_layer))
    assert kinds == ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "gate_proj", "down_proj"]
    assert first_layer[:8] == [("q_proj", "A")] * 7 + [("q_proj", "B")]
    assert all(s.module.layer == 1 for s in layout.slots[179:179 * 2])


def _random_lora_state(kind, tokenizer, r, seed=0):
    model = attach_lora(make_tiny(kind, tokenizer).model, LoraSettings(r=r))
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, p in model.named_parameters():
        if "lora_" in name:
            key = name.replace(".default", "")
            state[key] = torch.randn(p.shape, generator=g) * torch.rand(1, generator=g).item() + torch.randn(1, generator=g).item()
    return model, state


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("chunk", [128, 16, 12])  # one partial chunk; exact division; remainders
@pytest.mark.parametrize("stat_code", ["paper", "log", "relative"])
def test_round_trip_is_exact_to_float_tolerance(tokenizer, kind, chunk, stat_code):
    model, state = _random_lora_state(kind, tokenizer, r=4)
    layout = TokenLayout.from_geometry(LoraGeometry.from_model(model, LoraSettings(r=4)), chunk=chunk,
                                       stat_code=stat_code)
    tokens = tokenize(state, layout)
    assert tokens.shape == (layout.num_tokens, 6, chunk + 2)
    rebuilt = detokenize(tokens, layout)
    assert rebuilt.keys() == state.keys()
    for key, value in state.items():
        torch.testing.assert_close(rebuilt[key], value, rtol=1e-5, atol=1e-5)


def test_state_dict_keys_load_into_peft(tokenizer):
    from peft import set_peft_model_state_dict

    model, state = _random_lora_state("llama", tokenizer, r=4)
    layout = TokenLayout.from_geometry(LoraGeometry.from_model(model, LoraSettings(r=4)), chunk=16)
    result = set_peft_model_state_dict(model, detokenize(tokenize(state, layout), layout))
    assert not [k for k in result.unexpected_keys if "lora_" in k]


def test_statistics_cells_hand_computed():
    from degaml.models import LoraModuleGeometry

    module = LoraModuleGeometry("model.layers.0.self_attn.q_proj", 0, "q_proj", 3, 2, rank=1)
    layout = TokenLayout.from_geometry(LoraGeometry((module,), rank=1, alpha=2), chunk=4)
    a = torch.tensor([[1.0, 2.0, 3.0]])  # mean 2, std sqrt(2/3)
    b = torch.tensor([[5.0], [5.0]])  # constant: std 0
    tokens = tokenize({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": a,
                       "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": b}, layout)
    std = (2 / 3) ** 0.5
    assert tokens.shape == (2, 3, 6)
    torch.testing.assert_close(tokens[0, 0, :3], torch.tensor([-1 / std, 0.0, 1 / std]))
    assert tokens[0, 0, 3] == 0  # padding
    torch.testing.assert_close(tokens[0, 1], torch.full((6,), 16.0))  # mean' = 8 * 2
    torch.testing.assert_close(tokens[0, 2], torch.full((6,), float(torch.log(torch.tensor(0.9 * std + 0.1)) + 1.6)))
    torch.testing.assert_close(tokens[0, 0, 4:], tokens[0, 1:, 0])  # column copies
    torch.testing.assert_close(tokens[1, 0, :2], torch.zeros(2))  # constant piece normalizes to 0
    mask = layout.padding_mask()
    assert mask[0, 0].tolist() == [True, True, True, False, True, True]
    assert mask[1, 0].tolist() == [True, True, False, False, True, True]


def test_detokenize_averages_statistic_copies():
    from degaml.models import LoraModuleGeometry

    module = LoraModuleGeometry("m.layers.0.q_proj", 0, "q_proj", 2, 2, rank=2)
    layout = TokenLayout.from_geometry(LoraGeometry((module,), rank=2, alpha=2), chunk=2)
    state = {"base_model.model.m.layers.0.q_proj.lora_A.weight": torch.tensor([[0.0, 2.0], [4.0, 6.0]]),
             "base_model.model.m.layers.0.q_proj.lora_B.weight": torch.tensor([[1.0, 1.0], [1.0, 1.0]])}
    tokens = tokenize(state, layout)
    noisy = tokens.clone()
    noisy[0, 2, :] += 0.8  # row copies of mean' (4 cells) up by 0.8 ...
    noisy[0, :2, 2] -= 1.6  # ... column copies (2 cells) down by 1.6: the average is unchanged
    torch.testing.assert_close(detokenize(noisy, layout)["base_model.model.m.layers.0.q_proj.lora_A.weight"],
                               state["base_model.model.m.layers.0.q_proj.lora_A.weight"])


def test_std_encoding_inverts():
    std = torch.tensor([0.0, 1e-4, 0.02, 1.0, 30.0])
    torch.testing.assert_close(decode_std(encode_std(std)), std, rtol=1e-5, atol=1e-6)


def test_shape_errors_name_the_tensor(tokenizer):
    model, state = _random_lora_state("llama", tokenizer, r=4)
    layout = TokenLayout.from_geometry(LoraGeometry.from_model(model, LoraSettings(r=4)), chunk=16)
    key = next(iter(state))
    state[key] = state[key][:, :-1]
    with pytest.raises(ValueError, match="lora_A.weight: shape"):
        tokenize(state, layout)
    with pytest.raises(ValueError, match="the layout needs"):
        detokenize(torch.zeros(3, 6, 18), layout)


@pytest.mark.parametrize("stat_code", ["paper", "log", "relative"])
def test_padded_statistic_cells_are_never_decoded(tokenizer, stat_code):
    # chunk 12 leaves partial last pieces in the tiny model: garbage written into their padded columns
    # (including the statistic rows' padded cells, which the training loss masks) must not move the decode.
    model, state = _random_lora_state("llama", tokenizer, r=4)
    layout = TokenLayout.from_geometry(LoraGeometry.from_model(model, LoraSettings(r=4)), chunk=12, stat_code=stat_code)
    assert any(s.width < 12 for s in layout.slots)
    tokens = tokenize(state, layout)
    garbage = tokens.clone()
    garbage[~layout.padding_mask()] = 1e3
    clean, dirty = detokenize(tokens, layout), detokenize(garbage, layout)
    for key in state:
        torch.testing.assert_close(dirty[key], clean[key], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dirty[key], state[key], rtol=1e-4, atol=1e-4)


def test_log_stat_code_resolves_small_scales():
    small = torch.tensor([3e-3, 1e-2])
    # The paper's code: a +0.03 error on the encoded std of a 3e-3 piece more than doubles it ...
    paper = decode_std(encode_std(small, "paper") + 0.03, "paper")
    assert paper[0] > 2 * small[0]
    # ... the log code turns the same error into a 3% scale error at every scale.
    log = decode_std(encode_std(small, "log") + 0.03, "log")
    torch.testing.assert_close(log / small, torch.full_like(small, 1.0305), rtol=2e-3, atol=0)


def test_unknown_stat_code_is_refused(tokenizer):
    model, _ = _random_lora_state("llama", tokenizer, r=4)
    with pytest.raises(ValueError, match="stat_code"):
        TokenLayout.from_geometry(LoraGeometry.from_model(model, LoraSettings(r=4)), chunk=12, stat_code="exp")
