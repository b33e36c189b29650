import pytest
import torch

from degaml.adaptation.base import BudgetError
from degaml.adaptation.latent import LatentConfig as SlotConfig
from degaml.adaptation.latent import optimize_delta, per_sample_scorer
from degaml.data import MultipleChoiceItem
from degaml.evaluation import LoglikelihoodScorer
from degaml.evaluation.ensemble import combine, ensemble_results, vote_letters
from degaml.evaluation.harness import TaskResult
from degaml.evaluation.metrics import Prediction
from degaml.models import latent_delta
from tests.conftest import make_tiny

PROMPTS = ["Question: Which gas do plants absorb?\nAnswer:", "4 * 8 =", "A man is sitting on a roof. He"]
ITEM = MultipleChoiceItem.cloze("x", "q", "Question: Which gas?\nAnswer:", ["carbon dioxide", "oxygen"], 0)


def test_zero_latent_steps_change_nothing(tokenizer):
    lm = make_tiny("llama", tokenizer)
    delta, trace, _ = optimize_delta(lm, PROMPTS, SlotConfig(steps=0))
    assert trace == [] and torch.count_nonzero(delta) == 0
    plain = LoglikelihoodScorer(lm).score([ITEM], progress=False)[0]
    with latent_delta(lm, delta):
        hooked = LoglikelihoodScorer(lm).score([ITEM], progress=False)[0]
    # Same items, same batching, a zero delta added: equal up to float rounding (never compare exactly:
    # kernels may sum in another order on another machine or thread count).
    assert [s.logprob for s in hooked] == pytest.approx([s.logprob for s in plain], abs=1e-5)


def test_latent_steps_lower_the_prompt_loss_and_leave_weights_untouched(tokenizer):
    lm = make_tiny("llama", tokenizer)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    delta, trace, _ = optimize_delta(lm, PROMPTS, SlotConfig(steps=5, lr=0.1))
    assert len(trace) == 5 and trace[-1] < trace[0]
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert all(p.grad is None for p in lm.model.parameters())
    assert all(p.requires_grad for p in lm.model.parameters())  # restored
    with latent_delta(lm, delta):
        shifted = LoglikelihoodScorer(lm).score([ITEM], progress=False)[0]
    plain = LoglikelihoodScorer(lm).score([ITEM], progress=False)[0]  # the hook is gone again
    assert [s.logprob for s in shifted] != [s.logprob for s in plain]


def test_latent_budget_errors():
    with pytest.raises(BudgetError, match="latent.steps"):
        SlotConfig(steps=-2)
    with pytest.raises(BudgetError, match="needs scope task"):
        SlotConfig(objective="infomax", scope="sample")
    with pytest.raises(BudgetError, match="needs at least one unlabelled item with its options"):
        optimize_delta(None, PROMPTS, SlotConfig(objective="infomax"))


def test_latent_infomax_lowers_its_objective_over_the_items_options(tokenizer):
    lm = make_tiny("llama", tokenizer)
    items = [ITEM, MultipleChoiceItem.cloze("y", "q", "Is 4 * 8 = 32?", ["yes", "no"], 0),
             MultipleChoiceItem.cloze("z", "q", "A man is on a roof. He", ["pulls up shingles", "swims"], 0)]
    delta, trace, _ = optimize_delta(lm, [], SlotConfig(steps=8, lr=0.5, objective="infomax"), items)
    assert len(trace) == 8 and trace[-1] < trace[0] and torch.count_nonzero(delta) > 0
    # The answers are never read: other golds, the same delta.
    flipped = [MultipleChoiceItem.cloze(it.id, it.question, it.contexts[0], it.choices, 1) for it in items]
    again, _, _ = optimize_delta(lm, [], SlotConfig(steps=8, lr=0.5, objective="infomax"), flipped)
    assert torch.equal(delta, again)


def test_tts_vote_and_confidence_hand_computed():
    scores = [[0.0, -1.0, -2.0],   # votes 0, fairly sure
              [-1.0, 0.0, -2.0],   # votes 1
              [-1.5, -0.5, -3.0],  # votes 1
              [-9.0, -9.0, 0.0]]   # votes 2, very sure
    assert combine(scores, "vote") == 1
    assert combine(scores, "confidence") == 2


def test_tts_vote_tie_goes_to_probability_mass_then_lowest_index():
    assert combine([[0.0, -5.0], [-0.1, 0.0]], "vote") == 0  # 1 vote each; choice 0 holds more mass
    assert combine([[0.0, -1.0], [-1.0, 0.0]], "vote") == 0  # exact tie: lowest index


def test_tts_single_adapter_is_plain_argmax():
    assert combine([[-3.0, -1.0, -2.0]], "vote") == 1 == combine([[-3.0, -1.0, -2.0]], "confidence")


def test_tts_bad_input():
    with pytest.raises(ValueError, match="valid: vote, confidence"):
        combine([[0.0, 1.0]], "median")
    with pytest.raises(ValueError, match="K x choices"):
        combine([[0.0]], "vote")


def test_generative_vote_takes_the_most_named_letter_then_the_first_named():
    assert vote_letters([1, 0, 1]) == 1
    assert vote_letters([None, 2, None]) == 2  # an unparseable member abstains
    assert vote_letters([2, 0, 0, 2]) == 2  # a tie: the option named first
    assert vote_letters([None, None]) is None


def _generated(task: str, preds: list[int | None], outputs: list[str], protocol: str = "generative") -> TaskResult:
    rows = [Prediction(f"i{k}", 0, p, output=o) for k, (p, o) in enumerate(zip(preds, outputs))]
    return TaskResult(task, protocol, "test", len(rows), {}, 1.5, rows)


def test_a_generative_ensemble_votes_each_item_and_keeps_every_members_output():
    members = [[_generated("t", [0, 1], ["[A]", "[B]"])], [_generated("t", [1, None], ["[B]", "?"])],
               [_generated("t", [0, None], ["[A]", "no"])]]
    (result,) = ensemble_results(members, {}, "mean")
    assert [p.pred for p in result.predictions] == [0, 1]
    assert result.predictions[1].member_outputs == ["[B]", "?", "no"]
    assert result.metrics["acc"] == 0.5 and result.metrics["unparseable"] == 0.0 and result.seconds == 4.5
    with pytest.raises(ValueError, match="different protocols"):
        ensemble_results([[_generated("t", [0], ["[A]"])], [_generated("t", [0], ["[A]"], "loglikelihood")]], {}, "vote")


def test_per_sample_latent_with_zero_steps_scores_like_the_plain_model(tokenizer):
    lm = make_tiny("llama", tokenizer)
    items = [ITEM, MultipleChoiceItem.cloze("y", "q", "4 * 8 =", [" 32", " 12", " 5"], 0)]
    plain = LoglikelihoodScorer(lm).score(items, progress=False)
    unchanged = per_sample_scorer(lm, {"steps": 0, "lr": 0.1}, batch_size=16)(items, False, "t")
    # Scored item by item here, all items in one batch there: equal up to float rounding only.
    flat = [s.logprob for row in plain for s in row]
    assert [s.logprob for row in unchanged for s in row] == pytest.approx(flat, abs=1e-4)
    fitted = per_sample_scorer(lm, {"steps": 3, "lr": 0.5}, batch_size=16)(items, False, "t")
    assert max(abs(a - b) for a, b in zip([s.logprob for row in fitted for s in row], flat)) > 1e-3


def test_per_sample_latent_scores_within_the_context_budget(tokenizer):
    lm = make_tiny("llama", tokenizer)
    long = MultipleChoiceItem.cloze("z", "q", "one two three four five six seven eight nine ten. 2 + 2 =",
                                    [" 4", " 5"], 0)
    budget = [s.logprob for row in LoglikelihoodScorer(lm, max_length=6).score([long], progress=False) for s in row]
    whole = [s.logprob for row in LoglikelihoodScorer(lm).score([long], progress=False) for s in row]
    cut = per_sample_scorer(lm, {"steps": 0, "lr": 0.1}, 16, None, 6)([long], False, "t")
    assert [s.logprob for row in cut for s in row] == pytest.approx(budget, abs=1e-4)
    assert max(abs(a - b) for a, b in zip(budget, whole)) > 1e-3  # the budget did cut the context


def test_per_sample_latent_falls_back_per_item_on_a_non_finite_loss(tokenizer, monkeypatch):
    from degaml.adaptation import latent

    lm = make_tiny("llama", tokenizer)
    plain = LoglikelihoodScorer(lm).score([ITEM], progress=False)

    def diverge(*args, **kwargs):
        raise FloatingPointError("non-finite latent loss at step 1")

    monkeypatch.setattr(latent, "optimize_delta", diverge)
    fallbacks: list[str] = []
    scores = latent.per_sample_scorer(lm, {"steps": 2, "lr": 0.1}, 16, fallbacks)([ITEM], False, "t")
    assert fallbacks == ["x"]
    assert [s.logprob for s in scores[0]] == pytest.approx([s.logprob for s in plain[0]], abs=1e-4)
