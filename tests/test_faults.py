"""Faults a user can cause, each refused with one line that names the file, field or shape at fault, never
a table of garbage and never a traceback. Tiny models, local files."""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from degaml.cli import main


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEGAML_CACHE", str(tmp_path / "cache"))


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _evaluate(ws, adapter, out):
    return ["evaluate", "--model.name", ws["model"], "--adapter", str(adapter), "--data.tasks", ws["tasks"][0], "--data.limit", "3",
            "--model.dtype", "float32", "--model.device", "cpu", "--out", str(out), "--progress", "false"]


@pytest.fixture(scope="module")
def adapter(workspace, tmp_path_factory):
    from degaml.config import LoraSettings, ModelConfig
    from degaml.models import attach_lora, load_model, lora_state, write_adapter

    lm = load_model(ModelConfig(name=workspace["model"], dtype="float32", device="cpu"))
    model = attach_lora(lm.model, LoraSettings(r=2, alpha=4))
    state = lora_state(model)
    model.unload()
    out = tmp_path_factory.mktemp("adapter") / "a"
    write_adapter({k: v + 0.01 for k, v in state.items()}, LoraSettings(r=2, alpha=4), workspace["model"], out)
    return out


def _broken(adapter, tmp_path, edit) -> object:
    copy = tmp_path / "broken"
    shutil.copytree(adapter, copy)
    weights = copy / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    edit(tensors, copy)
    save_file(tensors, str(weights))
    return copy


def test_a_sound_adapter_scores(workspace, adapter, tmp_path):
    main(_evaluate(workspace, adapter, tmp_path / "eval"))
    assert (tmp_path / "eval" / "results.json").is_file()


@pytest.mark.parametrize("case, edit, message", [
    ("nan", lambda t, d: t.__setitem__(next(iter(t)), torch.full_like(t[next(iter(t))], float("nan"))),
     "holds NaN or Inf values"),
    ("inf", lambda t, d: t.__setitem__(next(iter(t)), torch.full_like(t[next(iter(t))], float("inf"))),
     "holds NaN or Inf values"),
    ("missing layer", lambda t, d: [t.pop(k) for k in [k for k in t if "layers.1.mlp.down_proj" in k]],
     "model.layers.1.mlp.down_proj' has no lora_A and no lora_B tensor"),
    ("missing B", lambda t, d: t.pop(next(k for k in t if "lora_B" in k)), "has no lora_B tensor"),
    ("other rank", lambda t, d: t.update({k: torch.zeros(4, v.shape[1]) if "lora_A" in k else torch.zeros(v.shape[0], 4)
                                          for k, v in t.items()}), "adapter_config.json: r = 2"),
    ("unexpected module", lambda t, d: t.update({"base_model.model.model.layers.9.mlp.up_proj.lora_A.weight":
                                                 torch.zeros(2, 32)}), "does not exist in the model"),
    ("garbage config", lambda t, d: (d / "adapter_config.json").write_text("{not json"), "not a LoRA adapter config"),
])
def test_a_broken_adapter_is_refused_before_scoring(workspace, adapter, tmp_path, capsys, case, edit, message):
    broken = _broken(adapter, tmp_path, edit)
    err = _error(capsys, _evaluate(workspace, broken, tmp_path / "eval"))
    assert message in err and str(broken) in err
    assert not (tmp_path / "eval").exists()  # no table, no partial output


def test_adapter_without_weights_is_named(workspace, adapter, tmp_path, capsys):
    copy = tmp_path / "noweights"
    shutil.copytree(adapter, copy)
    (copy / "adapter_model.safetensors").unlink()
    assert "adapter_model.safetensors is missing" in _error(capsys, _evaluate(workspace, copy, tmp_path / "e"))


def test_a_nan_loglikelihood_is_an_error_not_a_prediction(tiny_lm):
    from degaml.config import EvalConfig
    from degaml.data import MultipleChoiceItem
    from degaml.evaluation.harness import evaluate_items
    from degaml.evaluation.loglikelihood import ChoiceScore

    item = MultipleChoiceItem.cloze("x", "q", "Q:", ["a", "b"], 0)

    def nan_scorer(items, progress, desc):
        return [[ChoiceScore(float("nan"), False, 1), ChoiceScore(-1.0, False, 1)] for _ in items]

    with pytest.raises(FloatingPointError, match="item 'x': non-finite log-likelihood"):
        evaluate_items(tiny_lm, "t", "test", [item], EvalConfig(), progress=False, scorer=nan_scorer)


@pytest.mark.parametrize("content, message", [
    (b'{"question": "q", "choices": ["a", "b"], "gold": 0}\n{"question": "caf\xe9", "choices": ["a", "b"], "gold": 0}\n',
     ":2: not UTF-8 (byte 0xe9"),
    (b'{"question": "q", "choices": ["a", "b"], "gold": 0}\n{"question": \n', ":2: not valid JSON"),
    (b'{"question": "q", "choices": ["a", "b"]}\n', ":1: missing field 'gold'"),
    (b'{"question": "q", "choices": ["a", "b"], "gold": 5}\n', "field 'gold' must be an integer in 0..1, got 5"),
    (b'{"question": "q", "choices": ["a"], "gold": 0}\n', "field 'choices' must be a list of at least two options"),
    (b'{"question": "' + b"x" * 200_000 + b'", "choices": ["a", "b"], "gold": 0}\n', ":1: record of 200,"),
    (b'{"question": "q", "choices": ["4", null], "gold": 0}\n', "field 'choices' option 1 must be non-empty text"),
    (b'{"id": "a", "question": "q", "choices": ["x", "y"], "gold": 0}\n{"id": "a", "question": "r", "choices": ["x", "y"],'
     b' "gold": 1}\n', "item id 'a' of record 1 repeats record 0's"),
])
def test_malformed_task_files_are_refused_with_file_and_line(workspace, tmp_path, capsys, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    err = _error(capsys, ["evaluate", "--model.name", workspace["model"], "--data.tasks", str(path), "--data.limit", "2",
                          "--model.dtype", "float32", "--model.device", "cpu", "--out", str(tmp_path / "e"), "--progress", "false"])
    assert message in err and str(path) in err


def test_empty_task_file_is_refused(workspace, tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    err = _error(capsys, ["evaluate", "--model.name", workspace["model"], "--data.tasks", str(path), "--model.dtype", "float32",
                          "--model.device", "cpu", "--out", str(tmp_path / "e"), "--progress", "false"])
    assert str(path) in err


@pytest.mark.parametrize("corruption, message", [
    (lambda t: t.update({k: v * float("nan") for k, v in list(t.items())[:1]}), "holds NaN or Inf values"),
    (lambda t: t.update({k: v + 4.1e9 for k, v in list(t.items())[:1]}), "beyond any trained LoRA"),
])
def test_corrupt_checkpoint_values_are_named_before_training(workspace, tmp_path, capsys, corruption, message):
    main(["collect", "--tasks", workspace["tasks"][0], "--out", str(tmp_path / "t"), "--model.name", workspace["model"],
          "--collect.burn_in_steps", "1", "--collect.checkpoints", "2", "--collect.batch_size", "2", "--lora.r", "2", "--lora.alpha", "4",
          "--model.dtype", "float32", "--model.device", "cpu", "--progress", "false"])
    checkpoint = sorted((tmp_path / "t" / "colors" / "checkpoints").iterdir())[0]
    tensors = load_file(str(checkpoint))
    corruption(tensors)
    save_file(tensors, str(checkpoint))
    err = _error(capsys, ["train-generator", "--trajectories", str(tmp_path / "t"), "--out", str(tmp_path / "g"),
                          "--generator.decoder", "cpu-tiny", "--generator.encoder", workspace["encoder"], "--generator.num_prompts", "2",
                          "--generator.prompt_tokens", "8", "--generator.chunk", "16", "--generator.steps", "1", "--progress", "false"])
    assert message in err and str(checkpoint) in err
    assert not (tmp_path / "g" / "decoder.safetensors").exists()


def test_unwritable_output_is_one_line_naming_the_path(workspace, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if __import__("os").geteuid() == 0:
            pytest.skip("root ignores directory permissions (the read-only test below covers the message)")
        err = _error(capsys, ["evaluate", "--model.name", workspace["model"], "--data.tasks", workspace["tasks"][0],
                              "--data.limit", "2", "--model.dtype", "float32", "--model.device", "cpu", "--out", str(locked / "e"),
                              "--progress", "false"])
        assert "cannot write" in err and str(locked) in err
    finally:
        locked.chmod(0o700)


def test_read_only_file_system_is_one_line(workspace, tmp_path, capsys, monkeypatch):
    import errno

    from degaml import io

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "ro" / "results.json"))

    monkeypatch.setattr(io.tempfile, "mkstemp", read_only)
    err = _error(capsys, ["evaluate", "--model.name", workspace["model"], "--data.tasks", workspace["tasks"][0], "--data.limit", "2",
                          "--model.dtype", "float32", "--model.device", "cpu", "--out", str(tmp_path / "ro"), "--progress", "false"])
    assert [line for line in err.splitlines() if line.startswith("degaml")] == [f"degaml: error: cannot write {tmp_path / 'ro' / 'results.json'}: "
                                        "Read-only file system (choose another --out, or free or unlock the disk)"]


def test_a_second_process_on_a_run_directory_is_refused(tmp_path):
    import subprocess
    import sys

    from degaml.io import DirectoryBusyError, exclusive_directory

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from degaml.io import exclusive_directory\n"
        f"with exclusive_directory({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DirectoryBusyError, match=rf"{tmp_path} is in use by pid {holder.pid}"), \
                exclusive_directory(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive_directory(tmp_path) as held:  # released when its holder dies, even by SIGKILL
        assert (held / ".lock.pid").read_text() == f"pid {__import__('os').getpid()}\n"


def test_an_output_replaced_whole_is_locked_without_a_file_beside_it(tmp_path):
    from degaml.io import DirectoryBusyError, cache_root, exclusive_output

    with exclusive_output(tmp_path / "adapter") as out:
        assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "cache"]  # the lock lives in the cache
        assert list((cache_root() / "locks").glob("*.lock"))
        with pytest.raises(DirectoryBusyError, match="adapter is in use by pid"), exclusive_output(out):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_an_output_path_that_is_a_file_is_refused_before_any_work(workspace, tmp_path, capsys, where):
    (tmp_path / "taken").write_text("not a directory")
    out = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "sub"
    err = _error(capsys, ["evaluate", "--model.name", workspace["model"], "--data.tasks", workspace["tasks"][0],
                          "--data.limit", "2", "--model.device", "cpu", "--out", str(out), "--progress", "false"])
    assert err.startswith("degaml: error: --out ") and "a file, not a directory" in err
    assert (tmp_path / "taken").read_text() == "not a directory"


def test_sigkill_at_several_points_then_resume_gives_the_uninterrupted_tables(workspace, tmp_path):
    import csv
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from tests.test_pipeline import _config

    def configured(name):
        (tmp_path / name).mkdir()
        path, run = _config(workspace, tmp_path / name)
        settings = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**settings, "seeds": [0]}))
        return path, run

    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: the same sums in every process
    command = [sys.executable, "-m", "degaml.cli", "run", "--config"]
    reference_config, reference = configured("reference")
    subprocess.run([*command, str(reference_config)], env=env, check=True, capture_output=True, timeout=600)

    config, run = configured("killed")
    kill_points = ["seed_0/trajectories/*/checkpoints/*.safetensors",  # during collection
                   "seed_0/folds/*/generator/decoder.safetensors",    # during generator training
                   "seed_0/folds/*/rewards/rewards.jsonl",            # during the policy's rewards
                   "seed_0/targets/*/degaml/cost.json",               # during adaptation
                   "seed_0/targets/*/mean/cost.json",                 # during the floors
                   "seed_0/folds/*/baselines/*/meta.json",            # during the baselines
                   "seed_0/targets/*/*/eval/results.json"]            # during evaluation
    for point in kill_points:
        process = subprocess.Popen([*command, str(config)], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not any(run.glob(point)) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, f"the run ended before reaching {point}"
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not (run / "report").is_dir()
    finished = subprocess.run([*command, str(config)], env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]

    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")], "temporary files were left behind"
    for table in ("in-domain.md", "out-of-domain.md", "in-domain.csv", "out-of-domain.csv"):
        assert (run / "report" / table).read_text() == (reference / "report" / table).read_text(), table

    def scores(directory):
        keep = ("seed", "task", "method", "score", "acc", "acc_norm", "n", "labelled_target_examples", "action")
        with (directory / "report" / "scores.csv").open() as f:
            return [{k: row[k] for k in keep} for row in csv.DictReader(f)]

    assert scores(run) == scores(reference)


def test_temporaries_of_a_killed_writer_are_removed_under_the_lock(tmp_path):
    from degaml.io import remove_temporaries

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".results.json.x1.tmp").write_text("{")
    (tmp_path / ".output.x2.tmp").mkdir()
    (tmp_path / ".output.x2.tmp" / ".inner.tmp").write_text("")
    (tmp_path / "a" / "results.json").write_text("{}")
    (tmp_path / ".lock").write_text("pid 1")
    removed = remove_temporaries(tmp_path)
    assert {p.name for p in removed} == {".results.json.x1.tmp", ".output.x2.tmp"}
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".lock", "a", "results.json"]


def _evaluate_task(ws, task, out):
    return ["evaluate", "--model.name", ws["model"], "--data.tasks", str(task), "--data.limit", "2", "--model.dtype",
            "float32", "--model.device", "cpu", "--out", str(out), "--progress", "false"]


def test_a_huge_record_in_a_json_list_is_refused_before_any_work(workspace, tmp_path, capsys):
    import json

    path = tmp_path / "huge.json"
    path.write_text(json.dumps([{"question": "q", "choices": ["a", "b"], "gold": 0},
                                {"question": "x" * 10_000_000, "choices": ["a", "b"], "gold": 0}]))
    err = _error(capsys, _evaluate_task(workspace, path, tmp_path / "e"))
    assert "huge.json record 1: record of 10,000," in err


def test_an_adapter_rescaled_beyond_any_training_is_refused(workspace, adapter, tmp_path, capsys):
    broken = _broken(adapter, tmp_path, lambda t, d: t.update({k: v * 1e4 for k, v in t.items()}))
    err = _error(capsys, _evaluate(workspace, broken, tmp_path / "eval"))
    assert "x the layer's own norm" in err and str(broken) in err


def test_an_adapter_for_another_base_model_is_scored_with_a_warning(workspace, adapter, tmp_path, capsys):
    import json

    copy = tmp_path / "other-base"
    shutil.copytree(adapter, copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M"}))
    main(_evaluate(workspace, copy, tmp_path / "eval"))
    err = capsys.readouterr().err
    assert "warning:" in err and "written for base model 'HuggingFaceTB/SmolLM2-135M'" in err
    recorded = json.loads((tmp_path / "eval" / "results.json").read_text())["adapter_base_model_mismatch"]
    assert recorded == {"written_for": "HuggingFaceTB/SmolLM2-135M", "applied_to": workspace["model"]}
    main(_evaluate(workspace, adapter, tmp_path / "eval-same"))
    assert "adapter_base_model_mismatch" not in json.loads((tmp_path / "eval-same" / "results.json").read_text())


def test_a_support_budget_larger_than_the_train_partition_is_refused(workspace, tmp_path, capsys):
    err = _error(capsys, ["baseline", "no-meta", "--task", workspace["tasks"][0], "--out", str(tmp_path / "b"),
                          "--setup.model.name", workspace["model"], "--setup.model.device", "cpu",
                          "--setup.support", "100000", "--progress", "false"])
    assert "setup.support = 100000 labelled examples asked for" in err
    assert not (tmp_path / "b").exists()


def test_run_settings_are_checked_before_any_work(workspace, tmp_path, capsys):
    err = _error(capsys, ["run", "--name", "x", "--out", str(tmp_path / "run"), "--evaluation.limit", "-1"])
    assert "evaluation.limit must be >= 1 or null" in err
    assert not (tmp_path / "run").exists()


def test_a_garbage_results_file_is_named_by_the_report(workspace, tmp_path, capsys):
    from tests.test_records import _experiment

    run = tmp_path / "run"
    _experiment(run).save(run / "experiment.yaml")
    (run / "seed_0" / "targets" / "t" / "base" / "eval").mkdir(parents=True)
    (run / "seed_0" / "targets" / "t" / "base" / "eval" / "results.json").write_text("{broken")
    err = _error(capsys, ["report", str(run)])
    assert "results.json: not an evaluation's results.json" in err
    (run / "experiment.yaml").write_text("name: x\n")
    assert "experiment.yaml: " in _error(capsys, ["report", str(run)])


def _copied_generator(generator_dir, tmp_path):
    copy = tmp_path / "gen"
    shutil.copytree(generator_dir / "g", copy)
    return copy


@pytest.mark.parametrize("case, message", [
    ("nan bias", "holds NaN or Inf values"),
    ("truncated", "not readable safetensors"),
    ("other size", "weights of another generator?"),
])
def test_a_broken_generator_is_refused_before_it_writes_an_adapter(workspace, generator_dir, tmp_path, capsys, case,
                                                                   message):
    gen = _copied_generator(generator_dir, tmp_path)
    weights = gen / "decoder.safetensors"
    if case == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        tensors = load_file(str(weights))
        name = next(k for k in tensors if k.endswith("bias"))
        tensors[name] = torch.full_like(tensors[name], float("nan")) if case == "nan bias" else \
            torch.zeros(*[d + 1 for d in tensors[name].shape])
        save_file(tensors, str(weights))
    err = _error(capsys, ["generate", "--generator", str(gen), "--prompts", workspace["tasks"][0],
                          "--out", str(tmp_path / "adapter")])
    assert message in err and "decoder.safetensors" in err
    assert not (tmp_path / "adapter").exists()


def test_a_non_utf8_prompts_file_is_named(workspace, generator_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"caf\xe9\n")
    err = _error(capsys, ["generate", "--generator", str(generator_dir / "g"), "--prompts", str(prompts),
                          "--out", str(tmp_path / "adapter")])
    assert f"{prompts}:1: not UTF-8" in err


@pytest.mark.parametrize("case, message", [
    ("missing tensor", "is missing"),
    ("other rank", "has shape"),
])
def test_a_checkpoint_that_does_not_fit_names_the_file(workspace, generator_dir, tmp_path, capsys, case, message):
    trajectories = tmp_path / "t"
    shutil.copytree(generator_dir / "t", trajectories)
    checkpoint = sorted((trajectories / "numbers" / "checkpoints").glob("*.safetensors"))[0]
    tensors = load_file(str(checkpoint))
    key = next(iter(tensors))
    if case == "missing tensor":
        tensors.pop(key)
    else:
        tensors[key] = torch.zeros(4, tensors[key].shape[1]) if "lora_A" in key else torch.zeros(tensors[key].shape[0], 4)
    save_file(tensors, str(checkpoint))
    err = _error(capsys, ["train-generator", "--trajectories", str(trajectories), "--out", str(tmp_path / "g"),
                          "--generator.decoder", "cpu-tiny", "--generator.encoder", workspace["encoder"],
                          "--generator.num_prompts", "2", "--generator.prompt_tokens", "8", "--generator.chunk", "16",
                          "--generator.steps", "1", "--progress", "false"])
    assert message in err and str(checkpoint) in err


@pytest.mark.parametrize("case, message", [
    ("wrong shape", "the delta has shape (7,)"),
    ("nan", "the delta holds NaN or Inf values"),
    ("garbage info", "degaml.json: not a readable JSON record"),
])
def test_a_broken_latent_output_names_its_file(workspace, adapter, tmp_path, capsys, case, message):
    copy = tmp_path / "latent"
    shutil.copytree(adapter, copy)
    delta = torch.zeros(7) if case == "wrong shape" else torch.full((32,), float("nan"))
    save_file({"delta": delta}, str(copy / "latent_delta.safetensors"))
    if case == "garbage info":
        (copy / "degaml.json").write_text("{not json")
    err = _error(capsys, _evaluate(workspace, copy, tmp_path / "eval"))
    assert message in err


@pytest.mark.parametrize(("content", "expected"), [
    ("name: x\nlorra: {r: 4}\n", "does not accept option 'lorra.r'"),
    ("name: x\nevaluation: {limit: many}\n", "evaluation.limit: 'many' is not a valid int"),
    ("name: x\nseeds: zero\n", "seeds: 'zero' is not a valid list"),
])
def test_an_unknown_config_key_or_a_wrong_type_is_one_line_naming_the_setting_and_the_file(tmp_path, capsys, content,
                                                                                          expected):
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--config", str(config), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert expected in err and f"(in {config})" in err
    assert not (tmp_path / "run").exists()


def test_a_flag_given_on_the_command_line_is_not_blamed_on_the_config_file(tmp_path, capsys):
    config = tmp_path / "good.yaml"
    config.write_text("name: x\nevaluation: {limit: 5}\n")
    for value, expected in (("lots", "evaluation.limit: 'lots' is not a valid int"),
                            ("-1", "evaluation.limit must be >= 1 or null")):
        err = _error(capsys, ["run", "--config", str(config), "--evaluation.limit", value, "--out", str(tmp_path / "r")])
        assert expected in err and "(given on the command line)" in err and str(config) not in err
    assert not (tmp_path / "r").exists()


# --- no command deletes what it did not write ---------------------------------------------------------------

def _user_folder(tmp_path):
    folder = tmp_path / "userdir"
    folder.mkdir()
    (folder / "notes.txt").write_text("important")
    return folder


def _replacing_commands(ws, gen, adapter_dir, out):
    return {
        "generate": ["generate", "--generator", str(gen), "--prompts", ws["tasks"][0], "--out", str(out)],
        "adapt": ["adapt", "--generator", str(gen), "--task", ws["tasks"][0], "--action", "none", "--out", str(out)],
        "baseline": ["baseline", "no-meta", "--task", ws["tasks"][0], "--out", str(out), "--setup.model.name",
                     ws["model"], "--setup.model.device", "cpu", "--setup.support", "4", "--progress", "false"],
        "export-lm-eval": ["export-lm-eval", "--data.tasks", ws["tasks"][0], "--out", str(out)],
    }


@pytest.mark.parametrize("command", ["generate", "adapt", "baseline", "export-lm-eval"])
def test_a_command_that_replaces_its_output_refuses_a_folder_it_did_not_write(workspace, generator_dir, tmp_path,
                                                                              capsys, command, monkeypatch):
    folder = _user_folder(tmp_path)
    import degaml.models

    monkeypatch.setattr(degaml.models, "load_model", lambda *a, **k: pytest.fail("the model loaded first"))
    argv = _replacing_commands(workspace, generator_dir / "g", None, folder)[command]
    err = _error(capsys, argv)
    assert f"--out {folder} is a folder that degaml did not write" in err
    assert (folder / "notes.txt").read_text() == "important" and sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".lock")]  # no lock file beside the output


def test_a_command_replaces_its_own_earlier_output_and_an_empty_folder(workspace, generator_dir, tmp_path, capsys):
    out = tmp_path / "adapter"
    out.mkdir()  # empty: taken
    argv = ["generate", "--generator", str(generator_dir / "g"), "--prompts", workspace["tasks"][0], "--out", str(out)]
    main(argv)
    first = (out / "adapter_model.safetensors").read_bytes()
    assert (out / ".degaml-output").is_file()
    main(argv)  # its own output: replaced
    assert (out / "adapter_model.safetensors").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "cache"]


@pytest.mark.parametrize("out", [".", "~", "/", ".."])
def test_the_current_home_and_root_directories_are_refused_as_outputs(workspace, generator_dir, tmp_path, capsys,
                                                                     monkeypatch, out):
    here = tmp_path / "work"
    here.mkdir()
    (here / "keep.txt").write_text("keep")
    monkeypatch.chdir(here)
    monkeypatch.setenv("HOME", str(tmp_path))
    out = str(tmp_path) if out == "~" else out  # what a shell passes for ~ (a quoted "~" is YAML's null: the default)
    for argv in (["generate", "--generator", str(generator_dir / "g"), "--prompts", workspace["tasks"][0], "--out", out],
                 ["evaluate", "--model.name", workspace["model"], "--data.tasks", workspace["tasks"][0], "--out", out]):
        err = _error(capsys, argv)
        assert f"--out {out} is the" in err or f"--out {out} is a parent" in err
    assert (here / "keep.txt").read_text() == "keep"


def _keeping_commands(ws, gen_dir, out):
    """Commands that write into a folder they keep (and resume), with the least work that gets them there."""
    return {
        "evaluate": ["evaluate", "--model.name", ws["model"], "--data.tasks", ws["tasks"][0], "--data.limit", "2",
                     "--model.dtype", "float32", "--model.device", "cpu", "--out", str(out), "--progress", "false"],
        "run": ["run", "--config", "quick", "--out", str(out)],
        "collect": ["collect", "--tasks", ws["tasks"][0], "--out", str(out), "--model.name", ws["model"],
                    "--collect.burn_in_steps", "1", "--collect.checkpoints", "1", "--progress", "false"],
        "train-generator": ["train-generator", "--trajectories", str(gen_dir / "t"), "--out", str(out),
                            "--generator.decoder", "cpu-tiny", "--generator.encoder", ws["encoder"],
                            "--generator.num_prompts", "2", "--generator.prompt_tokens", "8", "--generator.chunk",
                            "16", "--generator.steps", "1", "--progress", "false"],
        "train-policy": ["train-policy", "--generator", str(gen_dir / "g"), "--tasks", ws["tasks"][1], "--out",
                         str(out), "--limit", "2", "--epochs", "1", "--progress", "false"],
    }


@pytest.mark.parametrize("command", ["evaluate", "run", "collect", "train-generator", "train-policy"])
def test_a_command_that_writes_into_its_folder_refuses_one_it_did_not_write(workspace, generator_dir, tmp_path,
                                                                           capsys, monkeypatch, command):
    import degaml.models

    folder = _user_folder(tmp_path)
    monkeypatch.setattr(degaml.models, "load_model", lambda *a, **k: pytest.fail("the model loaded first"))
    err = _error(capsys, _keeping_commands(workspace, generator_dir, folder)[command])
    assert f"--out {folder} is a folder that degaml did not write" in err
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_an_evaluation_folder_is_written_into_again(workspace, generator_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = _keeping_commands(workspace, generator_dir, out)["evaluate"]
    main(argv)
    main(argv)  # its own folder: taken again
    assert (out / "results.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no stale lock beside it


def test_a_generator_whose_training_was_cut_short_is_refused(workspace, generator_dir, tmp_path, capsys):
    import json

    gen = _copied_generator(generator_dir, tmp_path)
    (gen / "trained.json").write_text(json.dumps({"step": 1, "steps": 5}))
    err = _error(capsys, ["generate", "--generator", str(gen), "--prompts", workspace["tasks"][0],
                          "--out", str(tmp_path / "adapter")])
    assert "trained for 1 of its 5 steps" in err and "train-generator" in err
    assert not (tmp_path / "adapter").exists()
    finished = json.loads((generator_dir / "g" / "trained.json").read_text())
    assert finished["step"] == finished["steps"]  # what training itself writes


def test_a_truncated_adapter_is_one_line(workspace, adapter, tmp_path, capsys):
    copy = tmp_path / "truncated"
    shutil.copytree(adapter, copy)
    weights = copy / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    err = _error(capsys, _evaluate(workspace, copy, tmp_path / "eval"))
    said = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("degaml:")]
    assert len(said) == 1 and f"{weights}: not readable safetensors" in said[0]


def test_a_huge_line_in_a_prompts_file_is_refused_before_the_generator_loads(workspace, generator_dir, tmp_path,
                                                                            capsys, monkeypatch):
    import degaml.generator.generation as generation

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a short prompt\n" + "x" * 10_000_000 + "\n")
    monkeypatch.setattr(generation, "Generator", lambda *a, **k: pytest.fail("the generator loaded first"))
    err = _error(capsys, ["generate", "--generator", str(generator_dir / "g"), "--prompts", str(prompts),
                          "--out", str(tmp_path / "adapter")])
    assert f"{prompts}:2: a line of 10,000,001 bytes" in err


def test_prompts_given_in_python_get_the_same_limit(generator_dir, tmp_path):
    from degaml.data.example import DataFormatError
    from degaml.generator.generation import Generator

    with pytest.raises(DataFormatError, match="prompt 2 has 100,001 characters"):
        Generator(generator_dir / "g").generate_checked(["fine", "y" * 100_001], tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_an_unknown_task_is_refused_before_the_model_loads(workspace, tmp_path, capsys, monkeypatch):
    import degaml.models

    monkeypatch.setattr(degaml.models, "load_model", lambda *a, **k: pytest.fail("the model loaded first"))
    err = _error(capsys, ["evaluate", "--model.name", workspace["model"], "--data.tasks", "no_such_task",
                          "--out", str(tmp_path / "e")])
    assert "unknown task 'no_such_task'" in err and not (tmp_path / "e").exists()
