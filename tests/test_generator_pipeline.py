"""collect -> train-generator -> generate -> evaluate, through the CLI, on tiny models and local task files."""

import contextlib
import json
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from degaml.cli import main


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEGAML_CACHE", str(tmp_path / "cache"))


def _collect(ws, out, *extra):
    main(["collect", "--tasks", ",".join(ws["tasks"]), "--out", str(out), "--model.name", ws["model"],
          "--collect.burn_in_steps", "2", "--collect.checkpoints", "3", "--collect.batch_size", "2", "--lora.r", "2", "--lora.alpha", "4",
          "--model.dtype", "float32", "--model.device", "cpu", "--progress", "false", *extra])


def _train(ws, trajectories, out, steps="4", *extra):
    main(["train-generator", "--trajectories", str(trajectories), "--out", str(out), "--holdout", "numbers",
          "--generator.decoder", "cpu-tiny", "--generator.encoder", ws["encoder"], "--generator.num_prompts", "4", "--generator.prompt_tokens", "8",
          "--generator.chunk", "16", "--generator.steps", steps, "--generator.batch_size", "2", "--generator.eval_every", "2", "--progress", "false", *extra])


@pytest.fixture(scope="module")
def trajectories(workspace):
    out = workspace["root"] / "trajectories"
    _collect(workspace, out)
    return out


def test_collect_writes_every_trajectory_step(trajectories):
    from degaml.generator.trajectories import TrajectoryManifest

    for task in ("colors", "numbers"):
        manifest = TrajectoryManifest.load(trajectories / task)
        assert manifest.checkpoints == ["step_00003.safetensors", "step_00004.safetensors", "step_00005.safetensors"]
        assert manifest.task_source.endswith(f"{task}.jsonl") and manifest.config.burn_in_steps == 2
        assert not (trajectories / task / "resume.pt").exists()
        states = [load_file(str(p)) for p in manifest.checkpoint_paths(trajectories / task)]
        key = next(k for k in states[0] if "lora_B" in k)
        assert not torch.equal(states[0][key], states[1][key])  # each step is a new state


def test_collect_resumes_exactly_after_interruption(workspace, trajectories, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = torch.optim.AdamW.step

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # during the trajectory phase of the first task
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _collect(workspace, tmp_path / "t")
    monkeypatch.setattr(torch.optim.AdamW, "step", original)
    assert not (tmp_path / "t" / "colors" / "manifest.json").exists()
    _collect(workspace, tmp_path / "t")
    for name in json.loads((trajectories / "colors" / "manifest.json").read_text())["checkpoints"]:
        a = load_file(str(trajectories / "colors" / "checkpoints" / name))
        b = load_file(str(tmp_path / "t" / "colors" / "checkpoints" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_garbage_manifest_is_named(workspace, trajectories, tmp_path, capsys):
    import shutil

    copy = tmp_path / "traj"
    shutil.copytree(trajectories, copy)
    (copy / "colors" / "manifest.json").write_text("not json")
    with pytest.raises(SystemExit):
        _train(workspace, copy, tmp_path / "gen")
    assert f"{copy / 'colors' / 'manifest.json'}: not a trajectory manifest" in capsys.readouterr().err


def test_collection_with_two_seeds_is_pooled_per_task(workspace, tmp_path):
    from degaml.generator.dataset import load_trajectory
    from degaml.generator.generation import Generator

    out = tmp_path / "two_seeds"
    _collect(workspace, out, "--seeds", "[0,1]")
    assert sorted(p.name for p in out.iterdir()) == ["colors", "colors-seed1", "numbers", "numbers-seed1"]
    _train(workspace, out, tmp_path / "gen", "1")
    layout = Generator(tmp_path / "gen").layout
    pooled = load_trajectory([out / "colors", out / "colors-seed1"], layout, [])
    assert pooled.task == "colors" and len(pooled.tokens) == 6  # 3 checkpoints per seed


def test_a_cached_trajectory_trains_once_for_every_output(workspace, tmp_path, monkeypatch):
    from degaml.config import DataConfig, LoraSettings, ModelConfig
    from degaml.generator import trajectories as module
    from degaml.models import load_model

    lm = load_model(ModelConfig(name=workspace["model"], dtype="float32", device="cpu"))
    data = DataConfig(tasks=[workspace["tasks"][0]], split="train", limit=None)
    config = module.CollectConfig(burn_in_steps=1, checkpoints=2, batch_size=2)
    trained = []
    train = module._train_trajectory
    monkeypatch.setattr(module, "_train_trajectory", lambda *a, **k: trained.append(a[1]) or train(*a, **k))
    lora = LoraSettings(r=2, alpha=4)
    first, = module.collect_tasks(lm, "tiny", data, tmp_path / "a", lora, config, False, cache=tmp_path / "c")
    second, = module.collect_tasks(lm, "tiny", data, tmp_path / "b", lora, config, False, cache=tmp_path / "c")
    assert trained == ["colors"]  # the second output is linked from the cache
    names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file())
    assert module.TrajectoryManifest.load(second).checkpoints == module.TrajectoryManifest.load(first).checkpoints
    module.collect_tasks(lm, "tiny", data, tmp_path / "d", lora, module.CollectConfig(1, 2, 2, seed=1), False,
                         cache=tmp_path / "c")
    assert trained == ["colors", "colors"]  # another seed is another trajectory


def test_a_trajectory_starts_from_the_given_adapter_and_is_keyed_by_its_weights(workspace, trajectories, tmp_path):
    from degaml.config import DataConfig, LoraSettings, ModelConfig
    from degaml.generator import trajectories as module
    from degaml.models import delta_relative_error, load_model, read_lora_state, write_adapter

    lm = load_model(ModelConfig(name=workspace["model"], dtype="float32", device="cpu"))
    manifest = module.TrajectoryManifest.load(trajectories / "numbers")
    start = module.load_checkpoint(manifest.checkpoint_paths(trajectories / "numbers")[-1])
    base = tmp_path / "start"
    write_adapter(start, manifest.lora, manifest.model, base)
    data = DataConfig(tasks=[workspace["tasks"][0]], split="train", limit=None)
    lora = LoraSettings(r=2, alpha=4)
    config = module.CollectConfig(burn_in_steps=0, checkpoints=1, batch_size=2, lr=1e-6, start=str(base))
    moved, = module.collect_tasks(lm, "tiny", data, tmp_path / "a", lora, config, False, cache=tmp_path / "c")
    first = module.load_checkpoint(module.checkpoint_paths(moved)[0])
    assert delta_relative_error(first, start) < 0.05  # one tiny step from the start (from B = 0 it would be ~1)
    assert any(v.abs().max() > 0 for k, v in first.items() if "lora_B" in k)
    summary = module.TrajectoryManifest.load(moved).partition
    keys = {module.trajectory_key("colors", lora, c, summary, lm) for c in (config, module.CollectConfig(0, 1, 2, lr=1e-6))}
    assert len(keys) == 2
    # The key follows the start's weights, not its path: another adapter at the same path is another trajectory.
    write_adapter({k: v * 2 for k, v in read_lora_state(base).items()}, manifest.lora, manifest.model, base)
    assert module.trajectory_key("colors", lora, config, summary, lm) not in keys
    with pytest.raises(FileNotFoundError, match="nowhere"):
        module.collect_tasks(lm, "tiny", data, tmp_path / "b", lora,
                             module.CollectConfig(0, 1, 2, start=str(tmp_path / "nowhere")), False)


def test_corrupt_or_missing_checkpoint_is_named(workspace, trajectories, tmp_path, capsys):
    import shutil

    copy = tmp_path / "traj"
    shutil.copytree(trajectories, copy)
    bad = copy / "colors" / "checkpoints" / "step_00004.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(SystemExit):
        _train(workspace, copy, tmp_path / "gen")
    assert f"trajectory checkpoint {bad} is missing or corrupt" in capsys.readouterr().err
    bad.unlink()
    with pytest.raises(SystemExit):
        _train(workspace, copy, tmp_path / "gen")
    assert "checkpoint step_00004.safetensors listed in the manifest is missing" in capsys.readouterr().err


@pytest.fixture(scope="module")
def generator(workspace, trajectories):
    out = workspace["root"] / "generator"
    _train(workspace, trajectories, out)
    return out


def test_training_logs_collapse_diagnostics(generator):
    records = [json.loads(line) for line in (generator / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    config = json.loads((generator / "config.json").read_text())
    assert config["train_tasks"] == ["colors"] and config["heldout_tasks"] == ["numbers"]
    for key in ("heldout/numbers/loss", "heldout/numbers/mse_to_training_mean", "train/colors/mse_to_own_mean",
                "train/colors/generated_norm", "train/colors/target_norm"):
        assert key in records[-1]


def test_a_task_code_head_is_trained_recorded_and_loaded_with_its_generator(workspace, trajectories, tmp_path):
    from degaml.generator.generation import Generator

    out = tmp_path / "headed"
    _train(workspace, trajectories, out, "2", "--generator.decoder", "cpu-small-head32", "--generator.residual", "true")
    assert json.loads((out / "config.json").read_text())["head_rank"] == 32
    weights = load_file(str(out / "decoder.safetensors"))
    assert weights["head.directions"].shape[0] == 32 and weights["head.directions"].abs().sum() > 0  # it learned
    gen = Generator(out)
    assert gen.decoder.head is not None and torch.equal(gen.decoder.head.directions, weights["head.directions"])
    prompts = ["which color is the sky", "name a color"]
    state, _ = gen.generate_state(prompts)
    with torch.no_grad():
        gen.decoder.head.directions.zero_()
    assert any(not torch.equal(state[k], v) for k, v in gen.generate_state(prompts)[0].items())  # generation uses it


def test_task_loss_objective_trains_the_decoder_through_the_base_model(workspace, trajectories, tmp_path):
    from degaml.generator.generation import Generator

    out = tmp_path / "tl"
    _train(workspace, trajectories, out, "2", "--generator.objective", "task_loss", "--generator.task_examples", "2",
           "--generator.max_tokens", "32", "--generator.residual", "true", "--generator.stat_code", "log", "--generator.prompt_format", "with_options")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(r["train_task_loss"] > 0 and "train_reconstruction" not in r for r in records)
    assert "heldout/numbers/cosine_to_own" in records[-1] and "train/colors/delta_norm" in records[-1]
    gen = Generator(out)
    assert gen.prompt_format == "with_options" and gen.layout.stat_code == "log"
    # The residual base starts at the mean training adapter and the decoder moved away from its init.
    weights = load_file(str(out / "decoder.safetensors"))
    assert "base" in weights
    torch.manual_seed(0)
    fresh = type(gen.decoder)(gen.decoder.config, gen.decoder.shapes[0], gen.decoder.shapes[-1], residual=True)
    assert not torch.equal(fresh.layers[0].mix.weight, weights["layers.0.mix.weight"])


def test_prompt_contrast_is_logged_and_is_the_margin_for_a_generator_that_ignores_its_prompts(
        workspace, trajectories, tmp_path, monkeypatch):
    from degaml.generator import training
    from degaml.generator.record import GeneratorTrainConfig

    out = tmp_path / "contrast"
    main(["train-generator", "--trajectories", str(trajectories), "--out", str(out), "--generator.decoder", "cpu-tiny",
          "--generator.encoder", workspace["encoder"], "--generator.num_prompts", "4", "--generator.prompt_tokens", "8",
          "--generator.chunk", "16", "--generator.steps", "2", "--generator.batch_size", "2", "--generator.eval_every",
          "2", "--progress", "false", "--generator.objective", "task_loss", "--generator.task_loss_kind", "choice",
          "--generator.task_examples", "2", "--generator.residual", "true", "--generator.max_tokens", "32",
          "--generator.contrast", "1.0", "--generator.contrast_margin", "0.5"])
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(0 <= r["train_contrast"] <= 0.5 + 1e-6 and r["train_task_loss"] > 0 for r in records)
    assert json.loads((out / "config.json").read_text())["train"]["contrast"] == 1.0

    class Constant(torch.nn.Module):  # the same tokens whatever the prompts: every gap is zero
        def forward(self, condition):
            return torch.ones(len(condition), 3) * self.scale

        scale = torch.nn.Parameter(torch.ones(()))

    class Loss:
        def terms(self, state, batch):
            return {"task_loss": state.sum()}

    config = GeneratorTrainConfig(objective="task_loss", contrast=1.0, contrast_margin=0.25)
    tasks = [training.Conditioned(None, torch.randn(5, 2, 4)) for _ in range(3)]
    shares = [{"task_loss": torch.tensor(3.0)}, {"task_loss": torch.tensor(3.0)}]
    monkeypatch.setattr(training, "detokenize", lambda tokens, layout: tokens)
    term = training._contrast(Constant(), tasks, tasks[:2], [0, 1], shares, [{}, {}], None, Loss(), config,
                              torch.Generator().manual_seed(0), torch.device("cpu"), contextlib.nullcontext())
    assert term.item() == pytest.approx(0.25)


def test_anchored_choice_loss_logs_both_terms_and_records_its_settings(workspace, trajectories, tmp_path):
    from degaml.generator.record import GeneratorRecord, GeneratorTrainConfig

    out = tmp_path / "anchored"
    _train(workspace, trajectories, out, "2", "--generator.objective", "task_loss", "--generator.task_examples", "2",
           "--generator.max_tokens", "32", "--generator.residual", "true", "--generator.anchor", "0.5", "--generator.task_loss_kind", "choice")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    for r in records:  # the total is the answer loss plus the weighted anchor, reported step by step
        assert r["train_anchor"] >= 0
        assert r["train_loss"] == pytest.approx(r["train_task_loss"] + 0.5 * r["train_anchor"], rel=1e-5)
    card = GeneratorRecord.load(out).train
    assert card.anchor == 0.5 and card.task_loss_kind == "choice"
    with pytest.raises(ValueError, match="anchor must be >= 0 and needs a task_loss or hybrid objective"):
        GeneratorTrainConfig(anchor=0.5)


def test_residual_generator_starts_at_the_mean_adapter(workspace, trajectories, tmp_path):
    from degaml.generator.dataset import average_states, load_trajectory
    from degaml.generator.generation import Generator
    from degaml.models import delta_relative_error

    out = tmp_path / "res"
    _train(workspace, trajectories, out, "1", "--generator.residual", "true", "--generator.stat_code", "log", "--generator.lr", "0")
    gen = Generator(out)
    state, _ = gen.generate_state(["What color is the sky?"] * 4)
    colors = load_trajectory([trajectories / "colors"], gen.layout, [])
    mean = average_states([colors.adapter])
    # The last layer starts at 1% scale: the output is the mean adapter up to that small perturbation.
    assert delta_relative_error(state, mean) < 0.1


def test_residual_base_starts_the_generator_at_the_given_adapter(workspace, trajectories, tmp_path, capsys):
    from degaml.generator.dataset import load_trajectory
    from degaml.generator.generation import Generator
    from degaml.generator.trajectories import TrajectoryManifest
    from degaml.lora_tokens import TokenLayout
    from degaml.models import LoraGeometry, delta_relative_error, write_adapter

    manifest = TrajectoryManifest.load(trajectories / "numbers")
    layout = TokenLayout.from_geometry(LoraGeometry.from_dict(manifest.geometry), 16, "log")
    # The held-out task's own adapter, not the training mean: a generator that ignored residual_base would
    # start at the mean of `colors` instead.
    numbers = load_trajectory([trajectories / "numbers"], layout, []).adapter
    base, out = tmp_path / "base_adapter", tmp_path / "res"
    write_adapter(numbers, manifest.lora, manifest.model, base)
    _train(workspace, trajectories, out, "1", "--generator.residual", "true", "--generator.stat_code", "log", "--generator.lr", "0",
           "--generator.residual_base", str(base))
    state, _ = Generator(out).generate_state(["What color is the sky?"] * 4)
    assert delta_relative_error(state, numbers) < 0.1

    bad = tmp_path / "bad_adapter"
    write_adapter({k: v[..., :1] if "lora_A" in k else v for k, v in numbers.items()}, manifest.lora,
                  manifest.model, bad)
    with pytest.raises(SystemExit):
        _train(workspace, trajectories, tmp_path / "bad", "1", "--generator.residual", "true", "--generator.residual_base", str(bad))
    err = capsys.readouterr().err
    assert "residual_base" in err and "adapter_model.safetensors" in err and "lora_A" in err
    with pytest.raises(SystemExit):
        _train(workspace, trajectories, tmp_path / "off", "1", "--generator.residual_base", str(base))
    assert "needs residual" in capsys.readouterr().err


def test_init_from_starts_at_the_given_generator_and_refuses_other_shapes(workspace, trajectories, generator,
                                                                         tmp_path, capsys):
    out = tmp_path / "continued"
    _train(workspace, trajectories, out, "1", "--generator.init_from", str(generator), "--generator.lr", "0")
    before, after = load_file(str(generator / "decoder.safetensors")), load_file(str(out / "decoder.safetensors"))
    assert before.keys() == after.keys()
    for name in before:  # lr 0: the continued generator is still the one it started from
        torch.testing.assert_close(after[name], before[name])
    with pytest.raises(SystemExit):
        _train(workspace, trajectories, tmp_path / "other", "1", "--generator.init_from", str(generator), "--generator.residual", "true")
    err = capsys.readouterr().err
    assert "init_from" in err and "'base'" in err and "residual" in err


def test_two_processes_reach_the_one_process_weights(workspace, trajectories, tmp_path):
    """The same command on 2 CPU processes (gloo), started the way `accelerate launch --multi_gpu` starts GPU
    processes (torch.distributed.run's environment; accelerate's own CPU launcher needs MPI): the same global
    batch gives the one-process weights (data parallel, gradients averaged), to float tolerance."""
    import os
    import subprocess
    import sys

    args = ["train-generator", "--trajectories", str(trajectories), "--holdout", "numbers", "--generator.decoder", "cpu-tiny",
            "--generator.encoder", workspace["encoder"], "--generator.num_prompts", "4", "--generator.prompt_tokens", "8", "--generator.chunk", "16",
            "--generator.steps", "3", "--generator.batch_size", "2", "--generator.lr", "1e-3", "--generator.eval_every", "3", "--generator.objective", "hybrid",
            "--generator.max_tokens", "32",
            "--progress", "false"]
    main([*args, "--out", str(tmp_path / "one")])
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
              "-m", "degaml.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launch, *args, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    from degaml.generator.generation import Generator

    one, two = (load_file(str(tmp_path / d / "decoder.safetensors")) for d in ("one", "two"))
    assert one.keys() == two.keys()
    # A bias right before a LayerNorm has a zero gradient in exact arithmetic; Adam scales its float noise
    # (which depends on the summation order, so on the process count) to steps of size lr. Such weights
    # agree to a few lr, the rest to float tolerance, and the generated tokens (the function) to float tolerance.
    lr = 1e-3
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=3 * lr, rtol=1e-4)
    close = [name for name in one if torch.allclose(two[name], one[name], atol=1e-5, rtol=1e-4)]
    assert len(close) >= len(one) - 2
    decoders = [Generator(tmp_path / d).decoder for d in ("one", "two")]
    condition = torch.randn(2, *decoders[0].shapes[0], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(decoders[1](condition), decoders[0](condition), atol=1e-5, rtol=1e-4)
    decoder = decoders[0]
    torch.manual_seed(0)  # the training seed: the weights training started from
    fresh = type(decoder)(decoder.config, decoder.shapes[0], decoder.shapes[-1])
    assert not torch.allclose(fresh.layers[0].mix.weight, one["layers.0.mix.weight"])  # training moved them
    logs = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    ones = [json.loads(line) for line in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2, 3] and logs[-1]["processes"] == 2  # two processes, one writer
    for a, b in zip(logs, ones):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)


def test_hybrid_logs_both_terms(workspace, trajectories, tmp_path):
    out = tmp_path / "hy"
    _train(workspace, trajectories, out, "1", "--generator.objective", "hybrid", "--generator.task_loss_weight", "0.5",
           "--generator.max_tokens", "32")
    record = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    expected = record["train_reconstruction"] + 0.5 * record["train_task_loss"]
    assert abs(record["train_loss"] - expected) < 1e-4 * max(1.0, abs(expected))


def test_a_finished_generator_returns_before_loading_anything(workspace, trajectories, generator, monkeypatch):
    from degaml.generator import dataset

    def refuse(*args, **kwargs):
        raise AssertionError("a finished generator loaded its trajectories again")

    monkeypatch.setattr(dataset, "load_trajectory", refuse)
    _train(workspace, trajectories, generator)  # same steps: returns at once


def test_training_resumes_exactly(workspace, trajectories, generator, tmp_path, monkeypatch):
    from degaml.generator import training

    original = training.weighted_masked_mse
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # step 3 (after the checkpoint at step 2; evaluation calls it too)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "weighted_masked_mse", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _train(workspace, trajectories, tmp_path / "g")
    monkeypatch.setattr(training, "weighted_masked_mse", original)
    _train(workspace, trajectories, tmp_path / "g")
    a, b = load_file(str(generator / "decoder.safetensors")), load_file(str(tmp_path / "g" / "decoder.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "g" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_readme_python_example_runs(workspace, generator, tmp_path, monkeypatch):
    """The README's Python block, run as written but for the generator and task it names."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, flags=re.S).group(1)
    named_generator = re.search(r'load_generator\("([^"]+)"\)', code).group(1)
    numbers = next(t for t in workspace["tasks"] if t.endswith("numbers.jsonl"))
    code = code.replace(named_generator, str(generator)).replace('"arc_easy"', repr(numbers))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "adapters" / "my-task" / "adapter_model.safetensors").is_file()
    assert namespace["refined"].action.family == "ttt" and Path(namespace["refined"]) == Path("adapters/my-task-ttt")
    assert set(namespace["scores"]) == {"numbers"} and 0.0 <= namespace["scores"]["numbers"]["acc"] <= 1.0


def test_generated_adapter_loads_in_peft_and_evaluates(workspace, generator, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    main(["generate", "--generator", str(generator), "--prompts", workspace["tasks"][1], "--out", str(adapter)])
    out = capsys.readouterr().out
    assert "sampled with replacement" not in out and "generated in" in out
    base = AutoModelForCausalLM.from_pretrained(workspace["model"])
    model = PeftModel.from_pretrained(base, str(adapter))  # PEFT itself, unchanged
    assert any("lora_A" in n for n, _ in model.named_parameters())
    from degaml.models.serving import vllm_problems

    # The fixture's rank 2 is the only thing vLLM would refuse (degaml's default rank 8 passes: test_lora.py).
    assert [p for p in vllm_problems(adapter) if not p.startswith("r=2 ")] == []
    main(["evaluate", "--model.name", workspace["model"], "--adapter", str(adapter), "--data.tasks", workspace["tasks"][1],
          "--data.limit", "3", "--model.dtype", "float32", "--out", str(tmp_path / "eval"), "--progress", "false"])
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["results"][0]["num_items"] == 3


def test_too_few_prompts_are_sampled_with_replacement_and_said(workspace, generator, tmp_path, capsys):
    prompts = tmp_path / "two.txt"
    prompts.write_text("What color is the sky?\nWhat color is grass?\n")
    main(["generate", "--generator", str(generator), "--prompts", str(prompts), "--out", str(tmp_path / "a")])
    assert ("from the 2 unlabelled prompts given, drawn with replacement to fill the generator's 4 prompt slots"
            in capsys.readouterr().out)
    info = json.loads((tmp_path / "a" / "degaml.json").read_text())
    assert info["sampled_with_replacement"] and info["prompts_given"] == 2 and info["prompts_used"] == 4
    assert info["task"] == "two.txt"


def test_generator_refuses_model_of_other_geometry(generator):
    from transformers import LlamaConfig

    from degaml.config import LoraSettings
    from degaml.generator.generation import Generator
    from degaml.models import AdapterMismatchError, LoraGeometry

    other = LoraGeometry.from_config(LlamaConfig(vocab_size=400, hidden_size=48, intermediate_size=64,
                                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
                                     LoraSettings(r=2))
    with pytest.raises(AdapterMismatchError, match="model.layers.0.self_attn.q_proj' is 32->32 at rank 2 in the generator but 48->48"):
        Generator(generator).generate(["a prompt"], generator.parent / "x", "m", target_geometry=other)


@pytest.mark.parametrize("family, params", [("none", ""), ("ttt", " steps=2 lr=1e-2"), ("mixing", " lam=0.5"),
                                            ("latent", " steps=2")])
def test_adapt_writes_what_evaluate_scores(workspace, generator, tmp_path, family, params):
    from safetensors.torch import load_file as load

    out = tmp_path / family
    main(["adapt", "--generator", str(generator), "--task", workspace["tasks"][1], "--out", str(out),
          "--action", family + params, "--model.device", "cpu"])
    info = json.loads((out / "degaml.json").read_text())
    assert info["action"]["family"] == family
    generated = tmp_path / "generated"
    main(["generate", "--generator", str(generator), "--prompts", workspace["tasks"][1], "--out", str(generated)])
    a, b = load(str(out / "adapter_model.safetensors")), load(str(generated / "adapter_model.safetensors"))
    changed = any(not torch.equal(a[k], b[k]) for k in a)
    assert changed == (family in ("ttt", "mixing"))  # latent keeps the adapter and adds a delta
    assert (out / "latent_delta.safetensors").exists() == (family == "latent")
    main(["evaluate", "--model.name", workspace["model"], "--adapter", str(out), "--data.tasks", workspace["tasks"][1],
          "--data.limit", "4", "--model.dtype", "float32", "--out", str(tmp_path / "eval"), "--progress", "false"])
    scores = json.loads((tmp_path / "eval" / "results.json").read_text())["results"][0]["predictions"]
    main(["evaluate", "--model.name", workspace["model"], "--adapter", str(generated), "--data.tasks", workspace["tasks"][1],
          "--data.limit", "4", "--model.dtype", "float32", "--out", str(tmp_path / "eval0"), "--progress", "false"])
    plain = json.loads((tmp_path / "eval0" / "results.json").read_text())["results"][0]["predictions"]
    gap = max(abs(a - b) for p, q in zip(scores, plain) for a, b in zip(p["logprobs"], q["logprobs"]))
    assert (gap < 1e-5) == (family == "none")


def test_tts_ensemble_is_written_and_scored_by_combining_members(workspace, generator, tmp_path):
    from degaml.evaluation.ensemble import combine, vote_letters
    from degaml.evaluation.generative import extract_answer

    out = tmp_path / "tts"
    main(["adapt", "--generator", str(generator), "--task", workspace["tasks"][0], "--out", str(out),
          "--action", "tts k=3 combine=vote", "--model.device", "cpu"])
    spec = json.loads((out / "tts.json").read_text())
    assert spec["members"] == ["members/0", "members/1", "members/2"] and spec["seeds"] == [0, 1, 2]
    infos = [json.loads((out / m / "degaml.json").read_text()) for m in spec["members"]]
    assert [i["seed"] for i in infos] == [0, 1, 2]
    from degaml.generator.generation import Generator

    gen = Generator(generator)
    prompts = [f"prompt {i}" for i in range(20)]
    samples = [tuple(gen.select_prompts(prompts, seed)[0]) for seed in (0, 1, 2)]
    assert len(set(samples)) == 3  # each member is conditioned on a different prompt sample
    main(["evaluate", "--model.name", workspace["model"], "--adapter", str(out), "--data.tasks", workspace["tasks"][0],
          "--data.limit", "5", "--model.dtype", "float32", "--out", str(tmp_path / "eval"), "--progress", "false"])
    result = json.loads((tmp_path / "eval" / "results.json").read_text())["results"][0]
    for p in result["predictions"]:
        assert len(p["member_logprobs"]) == 3 and p["pred"] == combine(p["member_logprobs"], "vote")
    assert result["metrics"]["acc"] == sum(p["pred"] == p["gold"] for p in result["predictions"]) / 5
    # The generative protocol votes the letters the members name (what ABMLL's posterior samples are scored by).
    main(["evaluate", "--model.name", workspace["model"], "--adapter", str(out), "--data.tasks", workspace["tasks"][0],
          "--data.limit", "5", "--model.dtype", "float32", "--evaluation.protocol", "generative",
          "--evaluation.max_new_tokens", "4", "--out", str(tmp_path / "g"), "--progress", "false"])
    voted = json.loads((tmp_path / "g" / "results.json").read_text())["results"][0]
    assert voted["protocol"] == "generative" and len(voted["predictions"]) == 5
    options = {len(json.loads(line)["choices"]) for line in Path(workspace["tasks"][0]).read_text().splitlines()}
    assert len(options) == 1  # every item of the task has as many options, so each output parses alike
    for p in voted["predictions"]:
        assert len(p["member_outputs"]) == 3
        assert p["pred"] == vote_letters([extract_answer(o, *options) for o in p["member_outputs"]])


def test_tts_disjoint_members_draw_from_disjoint_prompt_parts(workspace, generator, tmp_path, monkeypatch):
    from degaml.generator.generation import Generator

    seen = []
    generate_state = Generator.generate_state
    monkeypatch.setattr(Generator, "generate_state",
                        lambda self, prompts, *a, **k: seen.append(list(prompts)) or generate_state(self, prompts, *a, **k))
    out = tmp_path / "tts"
    main(["adapt", "--generator", str(generator), "--task", workspace["tasks"][0], "--out", str(out),
          "--action", "tts k=3 combine=confidence members=disjoint", "--model.device", "cpu",
          "--adaptation_prompts", "12"])
    assert json.loads((out / "tts.json").read_text())["member_prompts"] == "disjoint"
    assert len(seen) == 3 and sorted(len(p) for p in seen) == [4, 4, 4]
    assert len({p for part in seen for p in part}) == 12  # no prompt in two members


@pytest.mark.parametrize("variant", ["prompt_perplexity", "infomax"])
def test_searched_mixing_mixes_in_the_training_trajectories(workspace, generator, tmp_path, variant):
    out = tmp_path / "hub"
    main(["adapt", "--generator", str(generator), "--task", workspace["tasks"][1], "--out", str(out),
          "--action", f"mixing variant={variant} evaluations=6", "--model.device", "cpu"])
    info = json.loads((out / "degaml.json").read_text())
    # The generator was trained on "colors" only: the library is its last checkpoint (never the target's own).
    assert info["library_size"] == 1 and len(info["weights"]) == 2
    assert 1 <= len(info["trace"]) <= 8  # the budget (plus the start point and the final check)
    main(["evaluate", "--model.name", workspace["model"], "--adapter", str(out), "--data.tasks", workspace["tasks"][1],
          "--data.limit", "3", "--model.dtype", "float32", "--out", str(tmp_path / "eval"), "--progress", "false"])


def test_per_sample_latent_is_fitted_at_evaluation(workspace, generator, tmp_path):
    out = tmp_path / "slot"
    main(["adapt", "--generator", str(generator), "--task", workspace["tasks"][1], "--out", str(out),
          "--action", "latent scope=sample steps=2 lr=0.5", "--model.device", "cpu"])
    assert not (out / "latent_delta.safetensors").exists()
    assert json.loads((out / "degaml.json").read_text())["latent"]["scope"] == "sample"
    generated = tmp_path / "generated"
    main(["generate", "--generator", str(generator), "--prompts", workspace["tasks"][1], "--out", str(generated)])
    scores = {}
    for name, adapter in (("slot", out), ("plain", generated)):
        main(["evaluate", "--model.name", workspace["model"], "--adapter", str(adapter), "--data.tasks", workspace["tasks"][1],
              "--data.limit", "3", "--model.dtype", "float32", "--out", str(tmp_path / name), "--progress", "false"])
        predictions = json.loads((tmp_path / name / "results.json").read_text())["results"][0]["predictions"]
        scores[name] = [p["logprobs"] for p in predictions]
    assert scores["slot"] != scores["plain"]


def test_calibrate_scores_the_generated_adapter_calibrated_without_labels(workspace, generator, tmp_path):
    import math

    colors, numbers = workspace["tasks"]
    out = tmp_path / "calibrated"
    main(["adapt", "--generator", str(generator), "--task", colors, "--out", str(out),
          "--action", "latent objective=calibrate steps=0", "--model.device", "cpu"])
    assert not (out / "latent_delta.safetensors").exists()
    assert json.loads((out / "degaml.json").read_text())["latent"]["objective"] == "calibrate"
    generated = tmp_path / "generated"
    main(["generate", "--generator", str(generator), "--prompts", colors, "--out", str(generated)])

    def predictions(adapter, task, name):
        main(["evaluate", "--model.name", workspace["model"], "--adapter", str(adapter), "--data.tasks", task,
              "--data.limit", "6", "--model.dtype", "float32", "--out", str(tmp_path / name), "--progress", "false"])
        return json.loads((tmp_path / name / "results.json").read_text())["results"][0]["predictions"]

    # colors: every item offers red / blue / green, so batch calibration: log p(option) - log mean_items p(option).
    plain, calibrated = predictions(generated, colors, "plain"), predictions(out, colors, "cal")
    probs = [[math.exp(v) for v in row] for row in
             ([v - math.log(sum(math.exp(u) for u in p["logprobs"])) for v in p["logprobs"]] for p in plain)]
    prior = [sum(row[k] for row in probs) / len(probs) for k in range(3)]
    for p, c, row in zip(plain, calibrated, probs):
        assert c["raw_logprobs"] == pytest.approx(p["logprobs"], abs=1e-4)
        assert c["logprobs"] == pytest.approx([math.log(row[k] / prior[k]) for k in range(3)], abs=1e-4)
        assert c["pred"] == max(range(3), key=c["logprobs"].__getitem__)
    # numbers: free-text options, so PMI: the options scored again after the domain premise, under the adapter.
    plain, calibrated = predictions(generated, numbers, "plain-n"), predictions(out, numbers, "cal-n")
    for p, c in zip(plain, calibrated):
        assert c["raw_logprobs"] == pytest.approx(p["logprobs"], abs=1e-4)
        assert c["logprobs"] != pytest.approx(c["raw_logprobs"], abs=1e-3)
    with pytest.raises(SystemExit):
        main(["evaluate", "--model.name", workspace["model"], "--adapter", str(out), "--data.tasks", colors,
              "--eval.protocol", "generative", "--out", str(tmp_path / "gen"), "--progress", "false"])


def test_train_policy_measures_validation_rewards_and_adapt_follows_it(workspace, generator, tmp_path, monkeypatch,
                                                                       capsys):
    from degaml.adaptation import apply as apply_module
    from degaml.adaptation.actions import default_actions
    from degaml.adaptation.policy import PolicyRecord
    from degaml.adaptation.rewards import REWARDS_FILE, read_rows

    policy = tmp_path / "policy"
    args = ["train-policy", "--generator", str(generator), "--tasks", workspace["tasks"][0], "--out", str(policy),
            "--epochs", "20", "--limit", "3", "--model.device", "cpu", "--progress", "false"]
    main(args)
    rows = read_rows(policy / REWARDS_FILE)
    assert len(rows) == len(default_actions()) and {r.split for r in rows} == {"validation"}
    assert {r.action_label for r in rows} == {a.label for a in default_actions()}
    assert not (policy / "adapted").exists() or not any((policy / "adapted").rglob("*.safetensors"))
    # The generator trained on this task: its adapter is in-sample, and the policy's record says so.
    assert PolicyRecord.load(policy).in_sample_tasks == ["colors"]

    def refuse(*a, **k):
        raise AssertionError("a measured reward was measured again")

    monkeypatch.setattr(apply_module, "apply_action", refuse)
    monkeypatch.setattr("degaml.adaptation.rewards.apply_action", refuse)
    main(args)  # resumes: every row is already there
    monkeypatch.undo()
    capsys.readouterr()
    out = tmp_path / "chosen"
    main(["adapt", "--generator", str(generator), "--task", workspace["tasks"][1], "--out", str(out),
          "--policy", str(policy), "--model.device", "cpu"])
    printed = capsys.readouterr().out
    assert "policy scores" in printed and "<- chosen" in printed
    assert sum(line.strip().startswith("0.") or line.strip().startswith("1.") for line in printed.splitlines()) == len(rows)
    assert (out / "degaml.json").exists() or (out / "tts.json").exists()


def test_a_policy_never_learns_from_the_task_it_serves(workspace, generator, tmp_path):
    from degaml.adaptation.policy import PolicyConfig
    from degaml.adaptation.policy_training import fit_policy_on_tasks
    from degaml.config import DataConfig
    from degaml.generator.generation import Generator

    target = workspace["tasks"][1]
    with pytest.raises(ValueError, match=r"policy tasks include its target\(s\) \[.numbers.\]"):
        fit_policy_on_tasks([(target, Generator(generator))], None, [], PolicyConfig(), tmp_path / "p",
                            DataConfig(tasks=[]), exclude=[target])
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("extra, message", [
    (["--action", "magic"], "unknown family 'magic'; valid: none, ttt, tts, mixing, latent"),
    (["--action", "ttt lr=5"], "ttt.lr = 5 is out of range: must be a number in (0, 1]"),
    (["--action", "mixing lam=1.5"], "mixing.lam = 1.5 is out of range"),
    (["--action", "ttt steps"], "'steps' is not key=value"),
])
def test_adapt_rejects_bad_families_and_hyperparameters(workspace, generator, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        main(["adapt", "--generator", str(generator), "--task", workspace["tasks"][1], "--out", str(tmp_path / "x"),
              "--model.device", "cpu", *extra])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_generator_record_round_trips_and_names_a_bad_file(generator, tmp_path):
    from degaml.generator.record import GeneratorRecord

    record = GeneratorRecord.load(generator)
    assert record.train_tasks == ["colors"] and record.heldout_tasks == ["numbers"] and record.train.decoder == "cpu-tiny"
    record.save(tmp_path)
    assert GeneratorRecord.load(tmp_path) == record
    (tmp_path / "config.json").write_text('{"train": {"no_such_option": 1}}')
    with pytest.raises(ValueError, match=r"config.json: not a generator record"):
        GeneratorRecord.load(tmp_path)


def test_a_generator_is_pushed_and_loaded_by_hub_repo_id_up_to_the_network_call(generator, monkeypatch, capsys):
    """The Hub is unreachable here: every call up to the network is real, the network calls are recorded."""
    import huggingface_hub
    from huggingface_hub import ModelCard

    from degaml.generator.generation import Generator

    card = ModelCard.load(generator / "README.md")
    assert card.data.base_model and "lora-generator" in card.data.tags and "degaml generate" in card.text
    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, **k: calls.append(("create", k)))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder",
                        lambda self, **k: calls.append(("upload", k)) or types.SimpleNamespace(commit_url="url"))
    main(["push", "--generator", str(generator), "--repo", "someone/my-generator"])
    assert calls[0] == ("create", {"repo_id": "someone/my-generator", "private": False, "exist_ok": True,
                                   "repo_type": "model"})
    upload = calls[1][1]
    assert upload["folder_path"] == str(generator) and "state.pt" not in upload["allow_patterns"]
    assert {"config.json", "decoder.safetensors", "README.md"} <= set(upload["allow_patterns"])
    with pytest.raises(SystemExit):
        main(["push", "--generator", str(generator), "--repo", "no-slash"])
    assert "not a Hub repository id" in capsys.readouterr().err

    downloads = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda **k: downloads.append(k) or str(generator))
    loaded = Generator("someone/my-generator")
    assert downloads[0]["repo_id"] == "someone/my-generator" and loaded.directory == generator
