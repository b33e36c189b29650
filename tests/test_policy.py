import math

import pytest
import torch

from degaml.adaptation.actions import Action, default_actions
from degaml.adaptation.policy import (
    PolicyConfig,
    adapter_statistics,
    confidence_and_entropy,
    load_policy,
    save_policy,
    train_policy,
)


def expected_reward(policy, states, reward) -> float:
    """Mean over states of the policy's expected reward (exact: sums over all actions)."""
    with torch.no_grad():
        probs = policy(states).exp()
    return float(sum(probs[i, a] * reward(i, act) for i in range(len(states)) for a, act in enumerate(policy.actions))
                 / len(states))

ACTIONS = [Action("none"), Action("ttt", (("steps", 5),), cost=5), Action("latent", (("steps", 5),), cost=5)]


def _bandit(n=40, seed=0):
    """States in 2-D; TTT pays off when the first feature is positive, latent when negative, none never."""
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(n, 2, generator=g)

    def reward(i: int, action: Action) -> float:
        good = "ttt" if states[i, 0] > 0 else "latent"
        return 1.0 if action.family == good else 0.0

    return states, reward


def _untrained_expected_reward(states, reward):
    from degaml.adaptation.policy import LinearPolicy

    return expected_reward(LinearPolicy(2, ACTIONS), states, reward)


@pytest.mark.parametrize("method", ["reinforce", "rest_em"])
def test_training_increases_expected_reward_on_a_contextual_bandit(method):
    states, reward = _bandit()
    before = _untrained_expected_reward(states, reward)
    assert before == pytest.approx(1 / 3)
    policy, history = train_policy(states, reward, ACTIONS, PolicyConfig(algorithm=method, epochs=150, lr=0.1,
                                                                         rest_threshold=1.0))
    after = expected_reward(policy, states, reward)
    assert after > 0.8 > before
    test_states, test_reward = _bandit(seed=1)  # generalizes to unseen states of the same rule
    assert expected_reward(policy, test_states, test_reward) > 0.7


def test_cost_penalty_prefers_the_cheaper_of_equal_actions():
    states = torch.ones(8, 1)
    cheap, dear = Action("mixing", cost=0.1), Action("tts", cost=5.0)

    def reward(i, action):
        return 1.0

    policy, _ = train_policy(states, reward, [cheap, dear], PolicyConfig(epochs=100, lr=0.1, cost_penalty=0.1))
    assert policy.choose(states[0]) == cheap


def test_save_load_round_trip(tmp_path):
    states, reward = _bandit()
    policy, _ = train_policy(states, reward, ACTIONS, PolicyConfig(epochs=20))
    loaded = load_policy(save_policy(policy, PolicyConfig(), tmp_path / "policy"))
    assert loaded.actions == policy.actions
    assert loaded.scores(states[0]) == pytest.approx(policy.scores(states[0]))


def test_unknown_family_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown family 'magic'; valid: none, ttt, tts, mixing, latent"):
        Action("magic")


def test_default_action_space_covers_every_family():
    assert {a.family for a in default_actions()} == {"none", "ttt", "tts", "mixing", "latent"}
    assert len({a.label for a in default_actions()}) == len(default_actions())


def test_confidence_and_entropy_hand_computed():
    uniform = torch.zeros(1, 2, 4)
    peaked = torch.tensor([[[10.0, 0.0, 0.0, 0.0]]])
    conf, ent = confidence_and_entropy(uniform, torch.ones(1, 2))
    assert conf == pytest.approx(0.25) and ent == pytest.approx(math.log(4))
    conf, ent = confidence_and_entropy(peaked, torch.ones(1, 1))
    p = math.exp(10) / (math.exp(10) + 3)
    assert conf == pytest.approx(p, rel=1e-5)
    mask = torch.tensor([[1, 0]])
    assert confidence_and_entropy(torch.cat([peaked, uniform[:, :1]], 1), mask)[0] == pytest.approx(p, rel=1e-5)


def test_state_features_vector_concatenates_in_order():
    from degaml.adaptation.policy import StateFeatures

    features = StateFeatures(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0, 5.0, 6.0]), 0.7, 1.5, choice=[9.0])
    torch.testing.assert_close(features.vector(), torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.7, 1.5, 9.0]))


def test_adapter_statistics():
    state = {"m.lora_A.weight": torch.ones(2, 2), "m.lora_B.weight": torch.zeros(2, 2),
             "n.lora_A.weight": 3 * torch.ones(2, 2), "n.lora_B.weight": torch.zeros(2, 2)}
    torch.testing.assert_close(adapter_statistics(state), torch.tensor([4.0, 2.0, 0.0, 0.0]))


def test_action_hyperparameters_are_checked_and_listed():
    with pytest.raises(ValueError, match="unknown hyper-parameter 'rank' for family 'ttt'; valid: steps, lr"):
        Action("ttt", (("rank", 4),))
    with pytest.raises(ValueError, match=r"ttt.steps = 2.5 is out of range: must be an integer in \[0, 1000\]"):
        Action("ttt", (("steps", 2.5),))
    with pytest.raises(ValueError, match="latent.scope = 'batch' is out of range: must be one of task, sample"):
        Action("latent", (("scope", "batch"),))


def test_action_dict_and_label_round_trip():
    for action in default_actions():
        assert Action.from_dict(action.to_dict()) == action
        assert Action.parse(action.label, action.cost) == action


def test_every_registered_family_and_baseline_follows_the_plugin_convention():
    import dataclasses
    import types

    from degaml.adaptation.apply import FAMILIES
    from degaml.baselines import MODULES
    from degaml.models.adapted_output import Kind
    from degaml.plugins import capability, registry

    kinds = set(Kind.__args__)
    for name, family in FAMILIES.items():
        assert name == family.NAME and dataclasses.is_dataclass(family.CONFIG) and callable(family.apply)
        family.CONFIG()  # the defaults pass the family's own range checks
        for params, cost in family.GRID:
            action = Action(name, tuple(params.items()), cost)
            assert action.config() == family.CONFIG(**params)
            assert capability(family, "OUTPUT", action.config()) in kinds
    assert {n for n, f in FAMILIES.items() if any(Action(n, tuple(p.items()), c).needs_library for p, c in f.GRID)} \
        == {"mixing"}  # prompt-perplexity mixing only
    assert Action("latent", (("scope", "sample"),), 1.0).config().scope == "sample"
    assert capability(FAMILIES["latent"], "OUTPUT", Action("latent", (("scope", "sample"),), 1.0).config()) \
        == "latent-sample"
    for module in MODULES.values():
        assert module.OUTPUT == "plain" and module.NEEDS_LIBRARY is False and callable(module.finish)
    broken = types.ModuleType("broken")
    broken.NAME, broken.CONFIG = "broken", object
    with pytest.raises(TypeError, match="broken lacks OUTPUT, NEEDS_LIBRARY, apply"):
        registry("adaptation family", [broken], ["apply"])
    with pytest.raises(TypeError, match="share the name 'ttt'"):
        registry("adaptation family", [FAMILIES["ttt"], FAMILIES["ttt"]], ["apply"])


def test_policy_rejects_states_of_another_size():
    from degaml.adaptation.policy import LinearPolicy

    with pytest.raises(ValueError, match="policy expects 3 state features, got 5"):
        LinearPolicy(3, ACTIONS)(torch.zeros(1, 5))


def test_choice_features_read_the_option_probabilities_of_the_unlabelled_items(tokenizer):
    from degaml.adaptation.base import AdaptationContext
    from degaml.adaptation.task_setup import choice_features
    from degaml.config import LoraSettings
    from degaml.data import MultipleChoiceItem
    from degaml.evaluation import LoglikelihoodScorer
    from degaml.models import lora_state, peft_model
    from tests.conftest import make_tiny

    lm, lora = make_tiny("llama", tokenizer), LoraSettings(r=2, alpha=4)
    with peft_model(lm, lora) as model:  # PEFT's init: lora_B is zero, so the adapter changes no score
        state = lora_state(model)
    items = [MultipleChoiceItem.cloze(f"q{i}", "t", f"Is {i} even?\nAnswer:", ["yes", "no"], 0) for i in range(3)]
    items.append(MultipleChoiceItem.cloze("q3", "t", "Pick one:", ["red", "blue", "green"], 0))
    ctx = AdaptationContext(lm=lm, lora=lora, base_model="tiny", generate=lambda seed: (state, {}),
                            prompts=[item.prompt for item in items], items=items)
    rows = [torch.softmax(torch.tensor([s.logprob for s in row], dtype=torch.float64), 0)
            for row in LoglikelihoodScorer(lm).score(items, progress=False)]
    marginal = torch.zeros(3, dtype=torch.float64)
    for probs in rows:
        marginal[:len(probs)] += probs / 4
    confidence, balance, shared, options = choice_features(ctx, state)
    assert confidence == pytest.approx(float(sum(p.max() for p in rows) / 4), abs=1e-4)
    assert balance == pytest.approx(float(-(marginal * marginal.log()).sum() / math.log(3)), abs=1e-4)
    assert shared == 0.75 and options == pytest.approx(math.log(9 / 4))
    assert choice_features(AdaptationContext(lm=lm, lora=lora, base_model="tiny", generate=ctx.generate,
                                             prompts=ctx.prompts), state) == [0.0, 0.0, 0.0, 0.0]
