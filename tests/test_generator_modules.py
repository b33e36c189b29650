import pytest
import torch

from degaml.generator.decoder import HyperConvDecoder, HyperConvLayer
from degaml.generator.settings import NAMED_DECODERS, DecoderConfig


def test_layer_output_shape():
    layer = HyperConvLayer((4, 6, 10), (7, 5, 9), kernel_size=3)
    assert layer(torch.randn(2, 4, 6, 10)).shape == (2, 7, 5, 9)


@pytest.mark.parametrize("axis", [1, 2, 3])
def test_layer_output_depends_on_every_input_axis(axis):
    torch.manual_seed(0)
    layer = HyperConvLayer((4, 6, 10), (3, 5, 9), kernel_size=3)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(1, 4, 6, 10, requires_grad=True)
    layer(x)[0, 1, 2, 3].backward()
    # Summing out the other axes leaves how the output reacts to each index along `axis`.
    influence = x.grad.abs().sum(dim=[d for d in (1, 2, 3) if d != axis])[0]
    assert (influence > 0).sum() >= 2, f"output depends on a single index of axis {axis}"


def test_each_branch_conv_uses_its_axis_as_channels():
    layer = HyperConvLayer((4, 6, 10), (3, 5, 9), kernel_size=3)
    assert (layer.branch1_w.in_channels, layer.branch1_w.out_channels) == (10, 9)
    assert (layer.branch1_h.in_channels, layer.branch1_h.out_channels) == (6, 5)
    assert (layer.mix.in_channels, layer.mix.out_channels) == (4, 3) and layer.mix.bias is not None
    assert layer.branch1_w.bias is None and layer.branch2_h.bias is None


def test_decoder_maps_condition_to_tokens_and_counts_parameters_exactly():
    config = DecoderConfig(hidden_shapes=[(6, 8, 12)], kernel_size=3)
    decoder = HyperConvDecoder(config, condition_shape=(4, 10, 16), token_shape=(20, 6, 18))
    assert decoder(torch.randn(2, 4, 10, 16)).shape == (2, 20, 6, 18)
    actual = sum(p.numel() for p in decoder.parameters())
    assert actual == HyperConvDecoder.parameter_count(config, (4, 10, 16), (20, 6, 18))
    with pytest.raises(ValueError, match=r"condition has shape \(4, 9, 16\)"):
        decoder(torch.randn(1, 4, 9, 16))


def test_task_code_head_starts_at_zero_counts_exactly_and_fits_unrelated_token_maps():
    torch.manual_seed(0)
    plain, headed = DecoderConfig(hidden_shapes=[(6, 8, 12)]), DecoderConfig(hidden_shapes=[(6, 8, 12)], head_rank=4)
    shapes = (4, 10, 16), (20, 6, 18)
    decoder = HyperConvDecoder(headed, *shapes, residual=True)
    count = HyperConvDecoder.parameter_count(headed, *shapes) + decoder.base.numel()  # the count leaves out the base
    assert sum(p.numel() for p in decoder.parameters()) == count
    torch.manual_seed(0)
    without = HyperConvDecoder(plain, *shapes, residual=True)
    missing = without.load_state_dict(decoder.state_dict(), strict=False)
    assert missing.missing_keys == [] and all(k.startswith("head.") for k in missing.unexpected_keys)
    conditions = torch.randn(3, *shapes[0])
    assert torch.equal(decoder(conditions), without(conditions))  # the head adds nothing until it learns
    # Three conditions, three unrelated token maps: with its own weights per token the head fits them.
    targets = torch.randn(3, *shapes[1])
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        loss = (decoder(conditions) - targets).pow(2).mean()
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.05, float(loss)
    with pytest.raises(ValueError, match="head_rank"):
        DecoderConfig(head_rank=-1)


def test_paper_config_is_about_1_1_billion_parameters():
    count = HyperConvDecoder.parameter_count(NAMED_DECODERS["paper-qwen2.5-0.5b"], (128, 384, 384), (4296, 10, 130))
    assert 1.05e9 < count < 1.15e9  # docs/design.md, generator: "about 1.1 B parameters"


def test_paper_configs_end_in_the_token_shapes_of_their_models():
    from transformers import Qwen2Config

    from degaml.config import LoraSettings
    from degaml.lora_tokens import TokenLayout
    from degaml.models import LoraGeometry

    qwen15 = Qwen2Config(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, vocab_size=151936)
    layout = TokenLayout.from_geometry(LoraGeometry.from_config(qwen15, LoraSettings(r=16)), chunk=256)
    decoder = NAMED_DECODERS["paper-qwen2.5-1.5b"]
    assert decoder.kernel_size == 11 and decoder.hidden_shapes[-1][1:] == (32, 256)
    assert (layout.num_tokens, *layout.token_shape) == (4508, 18, 258)


def test_even_kernel_refused():
    with pytest.raises(ValueError, match="odd"):
        DecoderConfig(kernel_size=4)


def test_encoder_pads_to_max_tokens_and_caches(tiny_sentence_transformer, tmp_path):
    from degaml.generator.encoder import PromptEncoder

    encoder = PromptEncoder(str(tiny_sentence_transformer), max_tokens=8, cache_dir=tmp_path)
    prompts = ["which gas do plants absorb", "the answer is a gas which plants do absorb the a an the"]
    hidden = encoder.encode(prompts)
    assert hidden.shape == (2, 8, 16)
    assert torch.all(hidden[0, 7] == 0) and torch.any(hidden[1, 7] != 0)  # short prompt zero-padded
    assert len(list(tmp_path.rglob("*.safetensors"))) == 2
    encoder.model = None  # a cache hit must not touch the model
    torch.testing.assert_close(encoder.encode(prompts[::-1]), hidden.flip(0))


@pytest.mark.parametrize("name", __import__("degaml.generator.record", fromlist=["x"]).recipe_names())
def test_every_named_recipe_makes_a_valid_training_config(name):
    from dataclasses import asdict, replace

    from degaml.generator.record import RECIPE_FIELDS, GeneratorTrainConfig, load_recipe

    config = GeneratorTrainConfig(recipe=name)
    recipe = load_recipe(name)
    assert recipe and set(recipe) <= set(RECIPE_FIELDS)
    assert all(getattr(config, key) == value for key, value in recipe.items())
    assert config.applied_recipe == name and config.recipe == ""
    assert GeneratorTrainConfig(**asdict(config)) == config  # a saved card reloads
    # Applied once: a run may then resolve a field (union LoRA's directory for `residual_base: union`).
    if recipe.get("residual_base") == "union":
        assert replace(config, residual_base="/some/adapter").residual_base == "/some/adapter"


def test_a_recipe_refuses_a_contradicting_field_and_a_foreign_key(tmp_path):
    from degaml.generator.record import GeneratorTrainConfig

    with pytest.raises(ValueError, match="generator.objective = 'hybrid' contradicts recipe 'task-loss'"):
        GeneratorTrainConfig(recipe="task-loss", objective="hybrid")
    assert GeneratorTrainConfig(recipe="task-loss", stat_code="relative").stat_code == "relative"  # the same value
    bad = tmp_path / "mine.yaml"
    bad.write_text("objective: task_loss\nsteps: 10\n")
    with pytest.raises(ValueError, match=r"mine.yaml: a recipe sets only .*found \['steps'\]"):
        GeneratorTrainConfig(recipe=str(bad))
    with pytest.raises(ValueError, match="no recipe 'nope'; named recipes: choice-contrast-on-union, choice-on-union, choice-on-union-anchored"):
        GeneratorTrainConfig(recipe="nope")


def test_the_objective_registry_matches_the_config_choices_and_builds_each_loss():
    import typing

    from degaml.generator.objectives import OBJECTIVES
    from degaml.generator.record import Objective

    assert set(typing.get_args(Objective)) == set(OBJECTIVES)

    class Loss:  # stands in for function_space.AdapterLoss: task loss plus its anchor
        @staticmethod
        def loss(terms):
            return terms["task_loss"] + 0.5 * terms["anchor"]

    terms = {"reconstruction": torch.tensor(2.0), "task_loss": torch.tensor(3.0), "anchor": torch.tensor(4.0)}
    assert float(OBJECTIVES["reconstruction"].loss(terms, 0.1, None)) == 2.0
    assert float(OBJECTIVES["task_loss"].loss(terms, 0.1, Loss)) == 5.0
    assert float(OBJECTIVES["hybrid"].loss(terms, 0.1, Loss)) == pytest.approx(2.5)
    assert [o.needs_model for o in OBJECTIVES.values()] == [False, True, True]


def test_the_diagnostics_sample_a_bounded_seeded_set_of_training_tasks(monkeypatch):
    from degaml.generator import training
    from degaml.generator.record import GeneratorTrainConfig

    seen = []
    monkeypatch.setattr(training, "task_dependence",
                        lambda samples, names, *a: seen.append((len(samples), list(names))) or {})

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, condition):
            return torch.zeros(len(condition), 2, 1, 1)

    def task(name):
        trajectory = type("T", (), {"task": name, "adapter": None})()
        return training.Conditioned(trajectory, torch.randn(5, 2, 4))

    train = [task(f"t{i}") for i in range(40)]
    config = GeneratorTrainConfig(diagnostic_tasks=6)
    for _ in range(2):
        training._diagnostics(Decoder(), train, [task("held")], None, torch.ones(2, 1, 1), {}, config)
    assert [n for n, _ in seen] == [6, 1, 6, 1] and seen[0][1] == seen[2][1]  # the same sample each time
    with pytest.raises(ValueError, match="diagnostic_tasks must be >= 2"):
        GeneratorTrainConfig(diagnostic_tasks=1)


def test_the_retrieval_library_weights_tasks_by_prompt_similarity_and_mixes_their_adapters():
    from degaml.generator.retrieval import RetrievalLibrary

    class Encoder:  # one token per prompt, its state a fixed 2-d vector
        vectors = {"x": [3.0, 0.0], "y": [0.0, 2.0], "q": [1.0, 0.0]}

        def encode(self, prompts):
            return torch.tensor([[self.vectors[p]] for p in prompts])

    a = {"m.lora_A.weight": torch.ones(2, 3), "m.lora_B.weight": torch.zeros(3, 2)}
    b = {"m.lora_A.weight": torch.zeros(2, 3), "m.lora_B.weight": torch.ones(3, 2)}
    library = RetrievalLibrary({"a": (["x"], a), "b": (["y"], b)}, Encoder())
    mixed, weights = library.mixture(["q"], temperature=0.5)
    # cos(q, x) = 1, cos(q, y) = 0: softmax([1, 0] / 0.5)
    w_a = torch.exp(torch.tensor(2.0)) / (torch.exp(torch.tensor(2.0)) + 1)
    assert weights["a"] == pytest.approx(float(w_a), rel=1e-5) and weights["b"] == pytest.approx(float(1 - w_a), rel=1e-5)
    assert torch.allclose(mixed["m.lora_A.weight"], torch.full((2, 3), float(w_a)))
    assert torch.allclose(mixed["m.lora_B.weight"], torch.full((3, 2), float(1 - w_a)))
    with pytest.raises(ValueError, match="at least one training task"):
        RetrievalLibrary({}, Encoder())
