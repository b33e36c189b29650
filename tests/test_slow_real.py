"""Real weights and real benchmark data (minutes on 2 CPU cores): `pytest -m slow`."""

import pytest

from degaml.config import DataConfig, EvalConfig, ModelConfig
from degaml.data import TASKS, load_task, partition

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    from degaml.models import load_model

    return load_model(ModelConfig(name="smollm2-135m-instruct"))


@pytest.mark.parametrize("task", list(TASKS))
def test_every_registered_task_loads_offline_and_partitions(task):
    items = load_task(task)
    assert len(items) >= 299
    p = partition(task, items)
    assert len(p.ids["test"]) >= 90


def test_cached_model_matches_gguf_geometry(smollm):
    config = smollm.model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.num_key_value_heads, config.intermediate_size) == (30, 576, 9, 3, 1536)
    assert sum(p.numel() for p in smollm.model.parameters()) == pytest.approx(134.5e6, rel=0.01)


def test_smollm_beats_chance_on_arc_easy(smollm):
    from degaml.evaluation import evaluate_tasks

    results, _ = evaluate_tasks(smollm, DataConfig(tasks=["arc_easy"], limit=100), EvalConfig(), progress=False)
    assert results[0].metrics["acc"] > 0.35  # chance is 0.25


def test_scorer_matches_unbatched_reference_on_real_items(smollm):
    import torch

    from degaml.evaluation import LoglikelihoodScorer
    from degaml.evaluation.loglikelihood import encode_request

    items = load_task("hellaswag")[:3] + load_task("winogrande")[:3]
    scores = LoglikelihoodScorer(smollm, batch_size=8).score(items, progress=False)
    for item, item_scores in zip(items, scores):
        for ctx, cont, score in zip(item.contexts, item.continuations, item_scores):
            r = encode_request(smollm, ctx, cont, 8192)
            with torch.no_grad():
                logits = smollm.model(torch.tensor([r.tokens[:-1]])).logits[0].float()
            ref = torch.log_softmax(logits, -1)[r.context_length - 1:].gather(
                -1, torch.tensor(r.tokens[r.context_length:])[:, None]).sum().item()
            assert score.logprob == pytest.approx(ref, abs=0.05 + 0.01 * abs(ref))  # bf16 batching noise
