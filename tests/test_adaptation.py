import pytest
import torch
from peft import get_peft_model_state_dict

from degaml.adaptation import (
    BudgetError,
    LoraHubConfig,
    apply_ttt,
    lorahub_search,
    rank_half_mix,
    ttt,
)
from degaml.adaptation.ttt import prompt_batch
from degaml.config import LoraSettings
from degaml.models import attach_lora, weighted_adapter_sum
from tests.conftest import make_tiny

LORA = LoraSettings(r=4, alpha=8)
PROMPTS = ["Question: Which gas do plants absorb?\nAnswer:", "4 * 8 =", "A man is sitting on a roof. He"]


def _state(tokenizer, seed=0):
    lm = make_tiny("llama", tokenizer)
    model = attach_lora(lm.model, LORA)
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in get_peft_model_state_dict(model).items()}
    model.unload()
    return lm, state


def test_rank_half_mix_identity_swap_and_average(tokenizer):
    _, state = _state(tokenizer)
    same = rank_half_mix(state, 1.0)
    assert all(torch.equal(same[k], state[k]) for k in state)
    key = next(k for k in state if ".lora_A." in k)
    a = state[key]
    swapped = rank_half_mix(state, 0.0)[key]
    assert torch.equal(swapped, torch.cat([a[2:], a[:2]]))
    half = rank_half_mix(state, 0.5)[key]
    torch.testing.assert_close(half[:2], half[2:])
    b_key = key.replace("lora_A", "lora_B")
    assert torch.equal(rank_half_mix(state, 0.3)[b_key], state[b_key])
    with pytest.raises(BudgetError, match=r"lambda must be in \[0, 1\]"):
        rank_half_mix(state, 1.5)


def test_rank_half_mix_refuses_odd_rank():
    with pytest.raises(ValueError, match="even rank"):
        rank_half_mix({"m.lora_A.weight": torch.zeros(3, 4)}, 0.5)


def test_weighted_adapter_sum_identity_and_hand_computed():
    s1 = {"m.lora_A.weight": torch.tensor([[1.0, 2.0]]), "m.lora_B.weight": torch.tensor([[3.0]])}
    s2 = {"m.lora_A.weight": torch.tensor([[5.0, 0.0]]), "m.lora_B.weight": torch.tensor([[-1.0]])}
    single = weighted_adapter_sum([s1], [1.0])
    assert all(torch.equal(single[k], s1[k]) for k in s1)
    mixed = weighted_adapter_sum([s1, s2], [0.5, 2.0])
    torch.testing.assert_close(mixed["m.lora_A.weight"], torch.tensor([[10.5, 1.0]]))
    torch.testing.assert_close(mixed["m.lora_B.weight"], torch.tensor([[-0.5]]))
    with pytest.raises(ValueError, match="one weight per adapter"):
        weighted_adapter_sum([s1, s2], [1.0])


def test_lorahub_search_finds_a_known_optimum():
    s0 = {"m.lora_A.weight": torch.tensor([[1.0, 0.0]]), "m.lora_B.weight": torch.tensor([[0.0]])}
    s1 = {"m.lora_A.weight": torch.tensor([[0.0, 1.0]]), "m.lora_B.weight": torch.tensor([[1.0]])}
    target = weighted_adapter_sum([s0, s1], [0.3, 0.7])

    def objective(state):
        return float(sum(((state[k] - target[k]) ** 2).sum() for k in state))

    result = lorahub_search([s0, s1], objective, LoraHubConfig(max_evaluations=200, l1=0.0))
    assert result.hyperparameters["weights"] == pytest.approx([0.3, 0.7], abs=0.02)
    assert objective(result.state) < objective(s0)


def test_lorahub_search_never_returns_worse_than_the_generated_adapter():
    s0 = {"m.lora_A.weight": torch.tensor([[1.0]]), "m.lora_B.weight": torch.tensor([[1.0]])}
    s1 = {"m.lora_A.weight": torch.tensor([[9.0]]), "m.lora_B.weight": torch.tensor([[9.0]])}

    def objective(state):
        return float((state["m.lora_A.weight"] - 1).abs().sum())

    config = LoraHubConfig(max_evaluations=5)
    result = lorahub_search([s0, s1], objective, config)
    weights = result.hyperparameters["weights"]
    start = objective(s0) + config.l1 * 1.0  # w = (1, 0)
    assert objective(result.state) + config.l1 * sum(abs(w) for w in weights) <= start + 1e-9


def test_prompt_batch_masks_padding(tokenizer):
    lm = make_tiny("llama", tokenizer)
    batch = prompt_batch(lm, ["a", "Question: Which gas do plants absorb?"], 64)
    assert ((batch["labels"] == -100) == (batch["attention_mask"] == 0)).all()
    assert (batch["attention_mask"][0] == 0).any()


def test_zero_ttt_steps_change_nothing(tokenizer):
    lm, state = _state(tokenizer)
    result = apply_ttt(lm, state, LORA, PROMPTS, ttt.TttConfig(steps=0))
    assert not result.fell_back and result.trace == []
    assert all(torch.equal(result.state[k], state[k]) for k in state)


def test_ttt_changes_the_adapter_and_restores_the_base_model(tokenizer):
    lm, state = _state(tokenizer)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    result = apply_ttt(lm, state, LORA, PROMPTS, ttt.TttConfig(steps=3, lr=1e-2, batch_size=2))
    assert len(result.trace) == 3
    assert any(not torch.equal(result.state[k], state[k]) for k in state)
    after = lm.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any("lora" in name for name, _ in lm.model.named_modules())


def _items(golds):
    from degaml.adaptation.base import blind
    from degaml.data import MultipleChoiceItem

    questions = [("Which gas do plants absorb?", ["oxygen", "carbon dioxide"]), ("Is 4 * 8 = 32?", ["yes", "no"]),
                 ("A man is on a roof. He", ["pulls up shingles", "swims"]), ("Sky color?", ["blue", "green"])]
    return [blind(MultipleChoiceItem.cloze(f"q{i}", q, f"Question: {q}\nAnswer:", c, g))
            for i, ((q, c), g) in enumerate(zip(questions, golds))]


@pytest.mark.parametrize("objective", ["pseudo_label", "infomax"])
def test_choice_level_ttt_trains_on_the_options_and_never_reads_answers(tokenizer, objective):
    from degaml.data import MultipleChoiceItem

    lm, state = _state(tokenizer)
    config = ttt.TttConfig(steps=3, lr=1e-2, batch_size=2, objective=objective)
    result = apply_ttt(lm, state, LORA, PROMPTS, config, items=_items([0, 1, 0, 1]))
    assert not result.fell_back and len(result.trace) == 3
    assert any(not torch.equal(result.state[k], state[k]) for k in state)
    # The same items with other answers give the very same adapter: the answers are never read (and `blind`
    # has removed them anyway).
    unblinded = [MultipleChoiceItem.cloze(it.id, it.question, it.contexts[0], it.choices, 1) for it in _items([0] * 4)]
    other = apply_ttt(lm, state, LORA, PROMPTS, config, items=unblinded)
    assert all(torch.equal(result.state[k], other.state[k]) for k in state)
    if objective == "pseudo_label":
        assert result.details["unlabelled_items"] == 4 and 1 <= result.details["pseudo_labels"] <= 4
    with pytest.raises(BudgetError, match="needs at least one unlabelled item with its options"):
        apply_ttt(lm, state, LORA, PROMPTS, config)


def test_choice_level_ttt_recomputes_activations_and_learns_the_same_adapter(tokenizer, monkeypatch):
    """Gradient checkpointing changes memory, not the gradients: the adapter matches one trained with the
    activations kept, and the shared base model is left without checkpointing."""
    from contextlib import nullcontext

    lm, state = _state(tokenizer)
    config = ttt.TttConfig(steps=3, lr=1e-2, batch_size=2, objective="infomax")
    recomputed = []
    real = ttt.recomputed_activations

    def spy(model):
        recomputed.append(model)
        return real(model)

    monkeypatch.setattr(ttt, "recomputed_activations", spy)
    checkpointed = apply_ttt(lm, state, LORA, PROMPTS, config, items=_items([0, 1, 0, 1]))
    assert len(recomputed) == 1 and not lm.model.is_activation_checkpointing
    monkeypatch.setattr(ttt, "recomputed_activations", lambda model: nullcontext())
    kept = apply_ttt(lm, state, LORA, PROMPTS, config, items=_items([0, 1, 0, 1]))
    assert any(not torch.equal(kept.state[k], state[k]) for k in state)
    for k in state:
        torch.testing.assert_close(checkpointed.state[k], kept.state[k], rtol=1e-5, atol=1e-6)


def test_pseudo_labels_are_the_models_confident_answers_balanced_over_positions(tokenizer):
    from degaml.adaptation.ttt import pseudo_labels
    from degaml.choice import (
        MODEL_INPUTS,
        choice_example,
        collate_choices,
        option_log_probs,
        option_scores,
    )
    from degaml.models import peft_model

    lm, state = _state(tokenizer)
    items = _items([0, 0, 0, 0])
    examples = [choice_example(lm, it, 64) for it in items]
    with peft_model(lm, LORA, state) as model, torch.no_grad():
        batch = collate_choices(lm, examples)
        logits = model(**{k: batch[k] for k in MODEL_INPUTS}).logits
        scores = option_scores(logits[batch["answer"]], batch)  # by hand: every position
        probs = option_log_probs(scores, batch["option_item"]).exp()
        kept, details = pseudo_labels(model, lm, examples, ttt.TttConfig(objective="pseudo_label", balance=False))
        assert [e.gold for e in kept] == probs.argmax(1).tolist()  # every item, labelled with its own answer
        balanced, _ = pseudo_labels(model, lm, examples, ttt.TttConfig(objective="pseudo_label"))
        assert max(details["pseudo_label_positions"].values()) >= max(
            sum(e.gold == p for e in balanced) for p in (0, 1))
        assert all(sum(e.gold == p for e in balanced) <= 2 for p in (0, 1))  # ceil(4 kept / 2 options)
        top = float(probs.max(1).values.max())
        none, _ = pseudo_labels(model, lm, examples, ttt.TttConfig(objective="pseudo_label", confidence=min(1, top + 1e-4)))
        assert none == []
    fell = apply_ttt(lm, state, LORA, PROMPTS, ttt.TttConfig(objective="pseudo_label", confidence=1.0), items=items)
    assert fell.fell_back and "confidence 1.0" in fell.reason and fell.state is state


def test_non_finite_loss_falls_back_to_the_unadapted_adapter(tokenizer):
    lm, state = _state(tokenizer)
    poisoned = {k: torch.full_like(v, float("nan")) for k, v in state.items()}
    result = apply_ttt(lm, poisoned, LORA, PROMPTS, ttt.TttConfig(steps=2))
    assert result.fell_back and "non-finite loss at step 1" in result.reason
    assert result.state is poisoned


def test_budget_and_range_errors():
    with pytest.raises(BudgetError, match="ttt.steps"):
        ttt.TttConfig(steps=-1)
    with pytest.raises(BudgetError, match="ttt.lr"):
        ttt.TttConfig(lr=5.0)
    with pytest.raises(BudgetError, match="max_evaluations"):
        LoraHubConfig(max_evaluations=0)


def test_adaptation_never_touches_the_generator(tokenizer):
    from degaml.generator.decoder import HyperConvDecoder
    from degaml.generator.settings import DecoderConfig
    from degaml.lora_tokens import TokenLayout, detokenize
    from degaml.models import LoraGeometry

    lm = make_tiny("llama", tokenizer)
    layout = TokenLayout.from_geometry(LoraGeometry.from_model(lm.model, LORA), chunk=16)
    decoder = HyperConvDecoder(DecoderConfig(hidden_shapes=[(4, 8, 16)]), (2, 8, 16),
                               (layout.num_tokens, *layout.token_shape))
    snapshot = {k: v.clone() for k, v in decoder.state_dict().items()}
    with torch.no_grad():
        state = detokenize(decoder(torch.randn(1, 2, 8, 16))[0] * 0.01, layout)
    apply_ttt(lm, state, LORA, PROMPTS, ttt.TttConfig(steps=2, lr=1e-2, batch_size=2))
    assert all(torch.equal(snapshot[k], v) for k, v in decoder.state_dict().items())
    assert all(p.grad is None for p in decoder.parameters())


def test_a_reward_row_is_reused_only_under_the_settings_that_measured_it(tokenizer, tmp_path, monkeypatch):
    """rewards.jsonl is keyed by everything that determines a reward: the same settings reuse a row, another
    item limit, another prompt sample or another generated adapter measure it again."""

    from degaml.adaptation import rewards
    from degaml.adaptation.actions import Action
    from degaml.adaptation.base import AdaptationContext
    from degaml.config import DataConfig, EvalConfig

    lm, state = _state(tokenizer)
    measured = []

    def fake_apply(action, ctx, out):
        measured.append(action.label)
        out.mkdir(parents=True)
        return {"seconds": 0.0}

    windows = []

    def fake_evaluate(lm, out, data, config, **kwargs):
        from degaml.evaluation.harness import TaskResult

        windows.append(config.max_length)
        return [TaskResult("t", "loglikelihood", data.split, 2, {"acc": 0.5, "acc_norm": 0.5}, 0.1, [])], {}

    monkeypatch.setattr(rewards, "apply_action", fake_apply)
    monkeypatch.setattr(rewards, "evaluate_adapted", fake_evaluate)

    def ctx(prompts=PROMPTS, scale=1.0):
        return AdaptationContext(lm=lm, lora=LORA, base_model="tiny", prompts=list(prompts), library=[], seed=0,
                                 generate=lambda seed: ({k: v * scale for k, v in state.items()}, {}))

    def measure(context, limit=3, work=tmp_path, max_length=None):
        data = DataConfig(tasks=["t"], split="validation", limit=limit)
        return rewards.measure_actions(context, "t", [Action("none")], data, EvalConfig(max_length=max_length), work,
                                       {}, "acc", progress=False)

    measure(ctx())
    measure(ctx())
    assert measured == ["none"]  # the same settings: the row is reused
    measure(ctx(), limit=4)
    measure(ctx(prompts=PROMPTS[:2]))
    measure(ctx(scale=2.0))
    assert measured == ["none"] * 4
    measure(ctx(), max_length=64)  # a context budget scores other tokens: measured again, within the budget
    assert measured == ["none"] * 5 and windows == [None] * 4 + [64]
    keys = {row.key for row in rewards.read_rows(tmp_path / rewards.REWARDS_FILE)}
    assert len(keys) == 5

    # Another run's table reads the machine's cache instead of measuring, and records the row it read.
    other = tmp_path / "other-run"
    assert measure(ctx(), work=other) == measure(ctx())
    assert measured == ["none"] * 5
    assert [row.score for row in rewards.read_rows(other / rewards.REWARDS_FILE)] == [0.5]
    # A run measured before the cache existed fills it when it resumes; a cached row cut short is measured again.
    from degaml.io import cache_root

    for path in (cache_root() / "rewards").glob("*.jsonl"):
        path.unlink()
    measure(ctx())
    (cached,) = (cache_root() / "rewards").glob("*.jsonl")
    intact = cached.stat().st_ino
    measure(ctx(), work=tmp_path / "reader")
    assert cached.stat().st_ino == intact  # reading an intact cache does not rewrite it
    cached.write_text(cached.read_text()[:-9])
    measure(ctx(), work=tmp_path / "third-run")
    assert measured == ["none"] * 6 and len(cached.read_text().splitlines()) == 1
