"""Baselines: meta-gradients against hand-derived values, the ABMLL ELBO, and every baseline's output
loading in PEFT and evaluating, through the CLI on a tiny model."""

import json
import math
import time

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from degaml.baselines.abmll import (
    AbmllConfig,
    gaussian_kl,
    infer_posterior,
    initial_prior,
    mean_kl,
    negative_elbo,
)
from degaml.baselines.common import BaselineSetup, lora_parameters
from degaml.baselines.maml import SharedMoments, meta_gradient, model_loss
from degaml.cli import main
from degaml.config import LoraSettings, ModelConfig
from degaml.data import MultipleChoiceItem
from degaml.models import peft_model
from degaml.sft import collate, training_example
from tests.conftest import QUESTIONS, make_tiny


def _quadratic(params, target):
    return 0.5 * ((params["w"] - target) ** 2).sum()


def test_first_order_matches_the_hand_derived_gradient_and_second_order_differs():
    # L_s = (w - a)^2 / 2, L_q = (w - b)^2 / 2, one SGD inner step of size lr:
    # phi = w - lr (w - a); first order: phi - b; second order: (1 - lr)(phi - b).
    w, a, b, lr = torch.tensor([2.0]), torch.tensor(0.5), torch.tensor(-1.0), 0.3
    phi = w - lr * (w - a)
    first, _, _ = meta_gradient(_quadratic, {"w": w}, [a], b, lr, order=1)
    second, _, _ = meta_gradient(_quadratic, {"w": w}, [a], b, lr, order=2)
    torch.testing.assert_close(first["w"], phi - b)
    torch.testing.assert_close(second["w"], (1 - lr) * (phi - b))
    assert not torch.allclose(first["w"], second["w"])


def test_adam_inner_step_with_shared_moments_hand_computed():
    # First Adam step: m_hat = g, v_hat = g^2, so the step is sign(g); first order: phi - b.
    w, a, b, lr = torch.tensor([2.0, -3.0]), torch.tensor(0.5), torch.tensor(-1.0), 0.1
    moments = SharedMoments({"w": w}, (0.9, 0.999), 1e-8)
    grads, _, updated = meta_gradient(_quadratic, {"w": w}, [a], b, lr, order=1, moments=moments)
    phi = w - lr * torch.sign(w - a)
    torch.testing.assert_close(grads["w"], phi - b, atol=1e-6, rtol=1e-6)
    assert updated.t == 1 and moments.t == 0  # the task's copy advanced; the shared state is merged by the caller
    torch.testing.assert_close(updated.m["w"], 0.1 * (w - a))


def _tasks(lm):
    out = {}
    for name, rows in QUESTIONS.items():
        items = [MultipleChoiceItem.cloze(f"{name}{i}", q, f"Question: {q}\nAnswer:", c, g) for i, (q, c, g) in enumerate(rows)]
        out[name] = [training_example(lm, it, 64) for it in items]
    return out


@pytest.mark.parametrize("order", [1, 2])
def test_one_meta_step_decreases_the_query_loss_on_a_task_family(tokenizer, order):
    lm = make_tiny("llama", tokenizer)
    tasks = _tasks(lm)
    pad = tokenizer.pad_token_id
    batches = {t: (collate(ex[:4], pad), collate(ex[4:8], pad)) for t, ex in tasks.items()}
    with peft_model(lm, LoraSettings(r=2, alpha=4)) as model:
        torch.nn.init.normal_(next(p for n, p in lora_parameters(model).items() if "lora_B" in n), std=0.01)
        params = {k: v.detach().clone() for k, v in lora_parameters(model).items()}
        loss_fn = model_loss(model)

        def adapted_query_loss(p):
            return sum(meta_gradient(loss_fn, p, [s], q, 0.05, order)[1] for s, q in batches.values())

        before = adapted_query_loss(params)
        grads = [meta_gradient(loss_fn, params, [s], q, 0.05, order)[0] for s, q in batches.values()]
        stepped = {k: v - 0.5 * sum(g[k] for g in grads) / len(grads) for k, v in params.items()}
        assert adapted_query_loss(stepped) < before


def test_second_order_through_adam_is_finite_at_peft_init(tokenizer):
    # PEFT starts B at zero, so A's gradient is exactly zero: Adam's 1/eps must not reach the meta-gradient.
    lm = make_tiny("llama", tokenizer)
    examples = _tasks(lm)["colors"]
    batch = collate(examples[:4], tokenizer.pad_token_id)
    with peft_model(lm, LoraSettings(r=2, alpha=4)) as model:
        params = {k: v.detach().clone() for k, v in lora_parameters(model).items()}
        moments = SharedMoments(params, (0.9, 0.999), 1e-8)
        grads, loss, _ = meta_gradient(model_loss(model), params, [batch, batch], batch, 1e-3, 2, moments)
    assert math.isfinite(loss) and all(torch.isfinite(g).all() for g in grads.values())
    assert max(g.abs().max() for g in grads.values()) < 1e3


def test_gaussian_kl_hand_computed_and_zero_when_posterior_is_prior():
    mu, log_sigma = torch.tensor([0.3, -1.0]), torch.tensor([0.0, -2.0])
    assert gaussian_kl(mu, log_sigma, mu, log_sigma).item() == pytest.approx(0.0, abs=1e-7)
    # KL(N(1, 1) || N(0, 4)) = log 2 + (1 + 1) / 8 - 1/2
    kl = gaussian_kl(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([math.log(2.0)]))
    assert kl.item() == pytest.approx(math.log(2) + 2 / 8 - 0.5, rel=1e-6)


def test_abmll_elbo_is_finite_and_inference_moves_the_posterior(tokenizer):
    lm = make_tiny("llama", tokenizer)
    batch = collate(_tasks(lm)["colors"][:4], tokenizer.pad_token_id)
    config = AbmllConfig(inner_lr=1e-2, beta=0.1)
    with peft_model(lm, LoraSettings(r=2, alpha=4)) as model:
        names = list(lora_parameters(model))
        prior = initial_prior(lora_parameters(model), config.init_sigma)
        loss_fn = model_loss(model)
        assert mean_kl(prior, prior, names).item() == 0.0
        value = negative_elbo(loss_fn, prior, prior, names, batch, config.beta, samples=2)
        assert torch.isfinite(value)
        posterior = infer_posterior(loss_fn, prior, names, [batch, batch], config)
    assert any(not torch.equal(posterior[k], prior[k]) for k in prior)
    assert mean_kl(posterior, prior, names).item() > 0


def _baseline(ws, method, out, *extra):
    meta = [] if method == "no-meta" else ["--train_tasks", ws["tasks"][0]]
    main(["baseline", method, "--task", ws["tasks"][1], "--out", str(out), *meta, "--setup.model.name", ws["model"],
          "--setup.lora.r", "2", "--setup.lora.alpha", "4", "--setup.support", "6", "--setup.steps", "2",
          "--setup.batch_size", "2", "--setup.meta_examples", "8", "--setup.model.device", "cpu", "--progress", "false",
          *extra])


@pytest.mark.parametrize("method, extra", [
    ("no-meta", []),
    ("union", ["--union.steps", "2"]),
    ("union-finetune", ["--union_finetune.steps", "2"]),
    ("maml", ["--maml.meta_steps", "2", "--maml.order", "2"]),
    ("abmll", ["--abmll.meta_steps", "2", "--abmll.eval_samples", "2"]),
    ("mean-finetune", ["--mean_finetune.task_steps", "1"]),
    ("lorahub", ["--lorahub.task_steps", "1", "--lorahub.evaluations", "4"]),
])
def test_every_baseline_writes_what_peft_loads_and_evaluate_scores(workspace, tmp_path, method, extra):
    out = tmp_path / method
    _baseline(workspace, method, out, *extra)
    adapters = [out / "members" / "0", out / "members" / "1"] if method == "abmll" else [out]
    from transformers import AutoModelForCausalLM

    from degaml.models.serving import vllm_problems

    for adapter in adapters:
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(workspace["model"]), str(adapter))
        assert any("lora_A" in n for n, _ in model.named_parameters())
        assert [p for p in vllm_problems(adapter) if not p.startswith("r=2 ")] == []
    info = json.loads((out / ("tts.json" if method == "abmll" else "degaml.json")).read_text())
    assert info["support_examples"] == (0 if method == "union" else 6)  # zero-shot union reads no target label
    assert info["seconds"] > 0 and info["peak_rss_mb"] > 0
    main(["evaluate", "--model.name", workspace["model"], "--adapter", str(out), "--data.tasks", workspace["tasks"][1],
          "--data.limit", "4", "--model.dtype", "float32", "--out", str(tmp_path / "eval"), "--progress", "false"])
    result = json.loads((tmp_path / "eval" / "results.json").read_text())["results"][0]
    assert result["num_items"] == 4


def test_baselines_refuse_the_target_among_training_tasks(workspace, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["baseline", "union", "--task", workspace["tasks"][1], "--out", str(tmp_path / "u"),
              "--train_tasks", ",".join(workspace["tasks"]), "--setup.model.name", workspace["model"]])
    assert "includes the target task 'numbers'" in capsys.readouterr().err
    assert not (tmp_path / "u").exists()


def test_setup_budget_is_validated():
    with pytest.raises(ValueError, match="setup.support must be >= 1"):
        BaselineSetup(support=0)


def test_the_registry_derives_commands_and_run_settings():
    import dataclasses
    import inspect

    from degaml.baselines import METHODS
    from degaml.cli import load_command
    from degaml.pipeline.settings import BaselineSettings

    commands = load_command("baseline")
    assert set(commands) == set(METHODS)
    settings = {f.name: f for f in dataclasses.fields(BaselineSettings)}
    assert BaselineSettings().methods == list(METHODS)
    for name, spec in METHODS.items():
        parameters = inspect.signature(commands[name]).parameters
        assert ("train_tasks" in parameters) == spec.meta_trains
        assert (spec.option in parameters) == spec.has_settings == (spec.option in settings)
        if spec.has_settings:  # one set of defaults: the method's own
            assert settings[spec.option].default_factory() == spec.config()


def test_a_meta_training_is_named_by_its_owner_and_settings():
    from degaml.baselines import METHODS

    union, tuned = METHODS["union"], METHODS["union-finetune"]
    assert union.meta_key(union.config(steps=3)) == tuned.meta_key(tuned.config(steps=3))  # shared cache
    assert union.meta_key(union.config(steps=3)) != union.meta_key(union.config(steps=4))  # never a stale one
    setup = BaselineSetup()
    assert union.meta_key(union.config(), setup) != union.meta_key(union.config(), BaselineSetup(max_tokens=64))
    assert union.meta_key(union.config(), setup) == union.meta_key(union.config(), BaselineSetup(support=3, steps=1))
    assert METHODS["maml"].meta_key(METHODS["maml"].config()).startswith("maml-")
    mean, hub = METHODS["mean-finetune"], METHODS["lorahub"]  # the search's settings do not make a new library
    assert mean.meta_key(mean.config(task_steps=2)) == hub.meta_key(hub.config(task_steps=2, evaluations=7))
    assert mean.meta_key(mean.config(task_steps=2)) != hub.meta_key(hub.config(task_steps=3))


def test_labelled_lorahub_lowers_the_support_loss_from_the_mean_adapter(tokenizer, tmp_path):
    """The weight search starts at the mean of the library and keeps a change only if the labelled support
    loss falls; a library member trained on the target's own task pulls the weights its way."""
    from degaml.baselines import lorahub
    from degaml.baselines.common import BaselineJob, stack_library, unstack_library
    from degaml.models import weighted_adapter_sum
    from degaml.sft import fine_tune

    lm = make_tiny("llama", tokenizer)
    tasks, lora = _tasks(lm), LoraSettings(r=2, alpha=4)
    support = tasks["numbers"][8:16]
    library = {"same": fine_tune(lm, lora, tasks["numbers"][:8], 8, 1e-2, 2, 0)[0],
               "other": fine_tune(lm, lora, tasks["colors"][:8], 8, 1e-2, 2, 0)[0]}
    assert unstack_library(stack_library(library)).keys() == {"other", "same"}
    setup = BaselineSetup(model=ModelConfig(name="tiny", device="cpu"), lora=lora, support=len(support))
    job = BaselineJob(setup, "numbers", ["same", "other"], lm, support, {})
    info = lorahub.finish(job, lorahub.CONFIG(evaluations=30, l1=0.0), stack_library(library), tmp_path / "hub",
                          time.perf_counter())
    trace, weights = info["objective_trace"], info["weights"]
    assert min(trace) < trace[0]  # trace[0]: the mean adapter, where the search starts
    assert weights["same"] > weights["other"]
    written = load_file(str(tmp_path / "hub" / "adapter_model.safetensors"))
    expected = weighted_adapter_sum([library["other"], library["same"]], [weights["other"], weights["same"]])
    key = next(k for k in expected if "lora_B" in k)
    torch.testing.assert_close(written[key].float(), expected[key], rtol=1e-5, atol=1e-7)
