"""Real weights and real benchmark data (minutes on 2 CPU cores): `pytest -m slow`."""

import pytest

from degaml.config import IN_DOMAIN_TASKS, DataConfig, EvalConfig, ModelConfig
from degaml.data import TASKS, load_task, partition

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    from degaml.models import load_model

    return load_model(ModelConfig(name="smollm2-135m-instruct"))


@pytest.mark.parametrize("task", list(TASKS))
def test_every_registered_task_loads_offline_and_partitions(task):
    items = load_task(task)
    assert len(items) >= 50  # SuperGLUE CB, the smallest, has 56; the in-domain targets 299 or more
    p = partition(task, items)
    assert len(p.ids["test"]) >= 0.25 * len(items) and p.ids["train"] and p.ids["validation"]
    if TASKS[task].domain == "in":
        assert len(items) >= 299 and len(p.ids["test"]) >= 90


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


@pytest.fixture(scope="module")
def real_adapters(tmp_path_factory):
    """A generated adapter (a small generator on two real trajectories) and a no-meta baseline adapter, both
    for SmolLM2-135M-Instruct at degaml's default LoRA settings."""
    from degaml.cli import main

    root = tmp_path_factory.mktemp("clients")
    main(["collect", "--tasks", "sciq,openbookqa", "--out", str(root / "traj"), "--collect.burn_in_steps", "2",
          "--collect.checkpoints", "2", "--collect.batch_size", "2", "--collect.max_tokens", "64", "--model.dtype", "float32", "--model.device", "cpu",
          "--progress", "false"])
    main(["train-generator", "--trajectories", str(root / "traj"), "--out", str(root / "gen"), "--generator.decoder", "cpu-tiny",
          "--generator.steps", "2", "--generator.batch_size", "2", "--generator.eval_every", "2", "--generator.max_prompts", "32", "--progress", "false"])
    main(["generate", "--generator", str(root / "gen"), "--prompts", "arc_easy", "--out", str(root / "generated")])
    main(["baseline", "no-meta", "--task", "arc_easy", "--out", str(root / "no_meta"), "--setup.steps", "2",
          "--setup.support", "8", "--setup.batch_size", "4", "--setup.model.dtype", "float32", "--setup.model.device", "cpu",
          "--progress", "false"])
    return {"generated": root / "generated", "no-meta": root / "no_meta"}


@pytest.mark.parametrize(("which", "task"), [*(("generated", t) for t in IN_DOMAIN_TASKS), ("no-meta", "arc_easy")])
def test_lm_eval_harness_loads_the_adapter_and_agrees_with_degaml(real_adapters, which, task, tmp_path, capsys):
    """lm-evaluation-harness's own HFLM(pretrained=..., peft=...) on the same requests: same predictions."""
    import json

    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from degaml.cli import main
    from degaml.data.prompts import load_partitioned
    from degaml.evaluation import predict_acc, predict_acc_norm
    from degaml.evaluation.harness import normalization_texts
    from degaml.models import resolve_model
    from degaml.models.serving import vllm_problems

    adapter, limit = real_adapters[which], 40
    model_dir = resolve_model("smollm2-135m-instruct")
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), str(adapter))  # PEFT itself
    assert vllm_problems(adapter) == []
    main(["evaluate", "--adapter", str(adapter), "--data.tasks", task, "--data.limit", str(limit), "--model.dtype", "float32",
          "--model.device", "cpu", "--out", str(tmp_path / "eval"), "--progress", "false"])
    ours = json.loads((tmp_path / "eval" / "results.json").read_text())["results"][0]["predictions"]

    harness = HFLM(pretrained=model_dir, peft=str(adapter), dtype="float32", batch_size=16, device="cpu")
    data = DataConfig(tasks=[task], split="test", limit=limit)
    (items, part), = load_partitioned(data).values()
    items = part.select(items, "test", limit)
    requests = [Instance("loglikelihood", doc={}, arguments=(c, x), idx=k)
                for it in items for k, (c, x) in enumerate(zip(it.contexts, it.continuations))]
    flat = iter(lp for lp, _ in harness.loglikelihood(requests, disable_tqdm=True))
    theirs = {it.id: [next(flat) for _ in it.choices] for it in items}
    same_acc = sum(p["pred"] == predict_acc(theirs[p["id"]]) for p in ours)
    same_norm = sum(p["pred_norm"] == predict_acc_norm(theirs[p["id"]], normalization_texts(it))
                    for p, it in zip(ours, items))
    delta = max(abs(a - b) for p in ours for a, b in zip(p["logprobs"], theirs[p["id"]]))
    with capsys.disabled():
        print(f"\n{which} on {task}: {len(ours)} items, same acc predictions {same_acc}/{len(ours)}, same acc_norm "
              f"{same_norm}/{len(ours)}, max |delta loglik| {delta:.2e}")
    assert [p["id"] for p in ours] == [it.id for it in items]
    assert same_acc == same_norm == len(ours) and delta < 1e-3
