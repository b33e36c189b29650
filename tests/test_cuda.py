"""The tiny random Llama and Qwen2 models through collect, train-generator, generate, adapt and evaluate on a
CUDA device: the `cuda` marker, run by scripts/gpu_check.sh on a GPU machine and skipped without one."""

import json

import pytest
import torch

from degaml.cli import main

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEGAML_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_the_commands_run_on_cuda(workspace, tokenizer, tmp_path, kind):
    from degaml.models.adapted_output import AdaptedOutput
    from tests.conftest import make_tiny

    model = tmp_path / "model"
    lm = make_tiny(kind, tokenizer)
    lm.model.save_pretrained(model)
    tokenizer.save_pretrained(model)
    tasks = ",".join(workspace["tasks"])
    cuda = ["--model.device", "cuda", "--progress", "false"]
    main(["collect", "--tasks", tasks, "--out", str(tmp_path / "traj"), "--model.name", str(model),
          "--collect.burn_in_steps", "1", "--collect.checkpoints", "2", "--collect.batch_size", "2", "--lora.r", "2",
          "--lora.alpha", "4", *cuda])
    manifest = json.loads((tmp_path / "traj" / "colors" / "manifest.json").read_text())
    assert manifest["meta"]["compute"]["device"].startswith("cuda")
    main(["train-generator", "--trajectories", str(tmp_path / "traj"), "--out", str(tmp_path / "gen"),
          "--generator.decoder", "cpu-tiny", "--generator.encoder", workspace["encoder"], "--generator.num_prompts", "4",
          "--generator.prompt_tokens", "8", "--generator.chunk", "16", "--generator.steps", "2",
          "--generator.batch_size", "2", "--generator.eval_every", "2", "--generator.objective", "task_loss",
          "--generator.residual", "true", "--generator.max_tokens", "32", "--progress", "false"])
    card = json.loads((tmp_path / "gen" / "config.json").read_text())
    assert card["compute"]["device"].startswith("cuda")  # the task loss ran the base model on the GPU
    main(["generate", "--generator", str(tmp_path / "gen"), "--prompts", workspace["tasks"][1],
          "--out", str(tmp_path / "generated"), "--device", "cuda"])
    main(["adapt", "--generator", str(tmp_path / "gen"), "--task", workspace["tasks"][1], "--out",
          str(tmp_path / "ttt"), "--action", "ttt objective=pseudo_label steps=2 lr=0.01", "--model.device", "cuda"])
    assert AdaptedOutput.load(tmp_path / "ttt").kind == "plain"
    main(["evaluate", "--model.name", str(model), "--adapter", str(tmp_path / "ttt"), "--data.tasks",
          workspace["tasks"][1], "--data.limit", "4", "--out", str(tmp_path / "eval"), *cuda])
    meta = json.loads((tmp_path / "eval" / "results.json").read_text())["meta"]
    assert meta["compute"]["device"].startswith("cuda")
