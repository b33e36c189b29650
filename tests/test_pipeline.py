"""`degaml run` end to end on a tiny model and local task files, its resumption, and `degaml report`."""

import csv
import json
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from degaml.adaptation.policy import PolicyRecord
from degaml.adaptation.rewards import REWARDS_FILE, read_rows
from degaml.cli import main
from degaml.pipeline.report import ReportSummary


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEGAML_CACHE", str(tmp_path / "cache"))


def _config(ws, tmp_path):
    letters = tmp_path / "letters.jsonl"
    letters.write_text("".join(json.dumps({"question": f"Which letter comes after {c}?",
                                           "choices": [chr(ord(c) + 1), chr(ord(c) + 2)], "gold": 0}) + "\n"
                               for c in "abcdefghijklmnopqrstuvwx"))
    colors, numbers = ws["tasks"]
    config = {
        "name": "tiny", "out": str(tmp_path / "run"), "model": {"name": ws["model"], "device": "cpu"},
        "lora": {"r": 2, "alpha": 4}, "seeds": [0, 1], "progress": False,
        "tasks": {"train": [colors, numbers], "heldout": [numbers], "out_of_domain": [str(letters)]},
        "collect": {"burn_in_steps": 1, "checkpoints": 3, "batch_size": 2, "max_tokens": 32},
        "generator": {"decoder": "cpu-tiny", "encoder": ws["encoder"], "num_prompts": 4, "prompt_tokens": 8,
                      "chunk": 16, "steps": 2, "batch_size": 2, "eval_every": 1},
        "policy": {"actions": ["none", "mixing variant=rank_half lam=0.5"], "max_tasks": 2, "validation_limit": 3,
                   "epochs": 5, "select_examples": 1, "max_length": 4096},
        "evaluation": {"limit": 4},
        "baselines": {"support": 4, "steps": 1, "batch_size": 2, "meta_examples": 4,
                      "union": {"steps": 1}, "union_finetune": {"steps": 1}, "maml": {"meta_steps": 1}, "abmll": {"meta_steps": 1, "eval_samples": 2},
                      "mean_finetune": {"task_steps": 1}, "lorahub": {"task_steps": 1, "evaluations": 3}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, tmp_path / "run"


def test_run_writes_the_report_resumes_and_report_rebuilds(workspace, tmp_path, monkeypatch, capsys):
    from degaml.adaptation import rewards

    config, run = _config(workspace, tmp_path)
    windows, measure = [], rewards.evaluate_adapted

    def recorded(lm, out, data, evaluation, **kwargs):
        windows.append(evaluation.max_length)
        return measure(lm, out, data, evaluation, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(rewards, "evaluate_adapted", recorded)
        main(["run", "--config", str(config)])
    assert windows and set(windows) == {4096}  # policy.max_length reaches the policy's and the oracle's rewards
    report = run / "report"
    text = (report / "report.md").read_text()
    for section in ("## in-domain", "## out-of-domain", "stage ablation", "## cost", "per_task.png"):
        assert section in text
    for name in ("in-domain.csv", "out-of-domain.csv", "scores.csv", "per_task.png", "ablation.png",
                 "accuracy_vs_time.png"):
        assert (report / name).stat().st_size > 0
    ablation = (report / "ablation_in-domain.md").read_text().splitlines()  # base, + generalization, + adaptation
    assert len(ablation) == 5 and ablation[2].endswith("| - |")
    assert all(line.count("[") == 1 and line.endswith(("(beats) |", "(ties) |", "(loses to) |")) for line in ablation[3:])
    rows = (report / "scores.csv").read_text().splitlines()
    zero = ["base", "mean", "retrieval", "generated", "degaml", "union"]
    labelled = ["degaml-k", "abmll", "lorahub", "maml", "mean-finetune", "no-meta", "union-finetune"]
    assert len(rows) - 1 == 2 * 2 * (len(zero) + len(labelled) + 1)  # seeds x targets x (methods + the oracle)
    summary = ReportSummary.load(report / "summary.json")
    assert set(summary.domains) == {"in-domain", "out-of-domain"}
    for domain in summary.domains.values():  # two tracks by the labels read, each judged against its anchor
        assert {k: v.methods for k, v in domain.tracks.items()} == {"zero labels": zero,
                                                                         "k = 4 labels": labelled,
                                                                         "ceilings": ["oracle"]}
        assert len(domain.tracks["ceilings"].verdicts) == 1  # DeGAML against the best it could choose
        for track, anchor, members in (("zero labels", "- DeGAML ", zero), ("k = 4 labels", "- degaml-k ", labelled)):
            judged = domain.tracks[track].verdicts
            assert len(judged) == len(members) - 1  # the anchor against every other method of its track
            assert all(v.startswith(anchor) and "paired bootstrap" in v and "2 seed(s)" in v for v in judged)
        assert set(domain.majority_rates) == set(domain.tasks)  # both targets have two choices
    assert "Majority-class rate of the two-choice tasks: numbers" in text
    # Each seed alone, for claims made "on both seeds": their per-item mean is the report's averaged correctness.
    from degaml.pipeline.report.verdicts import item_correctness

    for domain in ("in-domain", "out-of-domain"):
        for seed in (0, 1):
            section = text.split(f"### seed {seed} alone ({domain})")[1].split("###")[0]
            assert "| generated minus |" in section and "| degaml minus |" in section and "| generated |" in section
    both, alone = item_correctness(run), [item_correctness(run, seed=s) for s in (0, 1)]
    for method, tasks in both.items():
        for task, items in tasks.items():
            assert items == pytest.approx({i: (alone[0][method][task][i] + alone[1][method][task][i]) / 2
                                           for i in items})
    # Every baseline that uses labelled target data used the same number of examples; DeGAML none.
    costs = {r["method"]: r["labelled_target_examples"] for r in csv.DictReader(rows)}
    assert costs["degaml"] == costs["mean"] == costs["retrieval"] == costs["union"] == "0"
    assert {costs[m] for m in labelled} == {"4"} and costs["oracle"] == "3"  # its validation items
    assert "### zero labels" in text and "### k = 4 labels" in text
    # union and union-finetune have the same settings: one meta-training, cached once per fold and seed.
    from degaml.pipeline.layout import seed_run_in

    seed0 = seed_run_in(run, 0)
    caches = sorted(p.name for p in (seed0.fold("numbers") / "baselines").iterdir())
    # So do mean-finetune and labelled LoraHub: one library of per-task LoRAs.
    assert len([c for c in caches if c.startswith("union-")]) == 1 and len(caches) == 4  # + maml, abmll
    assert len([c for c in caches if c.startswith("task-loras-")]) == 1
    # Nested leave-one-out: the out-of-domain fold's policy learns from `numbers` adapted by the generator that
    # held it out; the `numbers` fold, the only in-domain one, has no such generator and says it is in-sample.
    policies = {f: PolicyRecord.load(seed0.policy(f)) for f in ("all", "numbers")}
    assert policies["all"].generators == {"numbers": str(seed0.generator("numbers"))}
    assert policies["all"].in_sample_tasks == [] and policies["numbers"].in_sample_tasks == ["colors"]
    # That policy's rewards for `numbers` and the `numbers` oracle are one measurement: each action once.
    shared = read_rows(seed0.rewards("numbers") / REWARDS_FILE)
    assert sorted(r.action_label for r in shared if r.task == "numbers") == \
        ["mixing variant=rank_half lam=0.5", "none"]

    # DeGAML-k chose among its candidates by the loss of the support example it held out.
    chosen = json.loads((seed0.method("numbers", "degaml-k").output / "degaml.json").read_text())
    assert {"generated", "generated + fine-tune"} <= set(chosen["selection_losses"])
    assert chosen["choice"] in chosen["selection_losses"] and chosen["selection_examples"] == 1

    def refuse(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    for target in ("degaml.adaptation.task_setup.adapt_task", "degaml.evaluation.output_scoring.evaluate_adapted",
                   "degaml.baselines.maml.meta_train", "degaml.baselines.abmll.finish",
                   "degaml.adaptation.policy_training.fit_policy_on_tasks"):
        monkeypatch.setattr(target, refuse)
    main(["run", "--config", str(config)])  # everything is complete: nothing is recomputed
    monkeypatch.undo()

    tables = (report / "in-domain.md").read_text()
    for path in report.iterdir():
        path.unlink()
    capsys.readouterr()
    main(["report", str(run)])  # from the artifacts alone
    assert (report / "in-domain.md").read_text() == tables
    assert "## in-domain" in capsys.readouterr().out

    # Published (the per-item predictions, costs, timings and settings, nothing a model is needed for) one seed
    # at a time into one folder, the parts merge, and the report rebuilt from that folder alone is the run's.
    published = tmp_path / "results" / "tiny"
    main(["publish", "--run_dir", str(run), "--out", str(published), "--seeds", "[1]"])
    main(["publish", "--run_dir", str(run), "--out", str(published), "--seeds", "[0]"])
    main(["publish", "--run_dir", str(run), "--out", str(published), "--seeds", "[0]"])  # again: no change
    assert not list(published.rglob("*.safetensors")) and not list(published.rglob("trajectories"))
    assert sum(f.stat().st_size for f in published.rglob("*") if f.is_file()) < 2e6
    provenance = json.loads((published / "provenance.json").read_text())
    assert [part["seeds"] for part in provenance["parts"]] == [[1], [0]]
    made_in = json.loads((run / "precision.json").read_text())["dtype"]  # float32, or bf16 where it is native
    assert all(part["cpu"] != "unknown" and part["dtype"] == made_in for part in provenance["parts"])
    assert yaml.safe_load((published / "experiment.yaml").read_text())["seeds"] == [0, 1]
    main(["report", str(published)])
    for name in ("in-domain.md", "out-of-domain.md", "scores.csv", "ablation_in-domain.md"):
        assert (published / "report" / name).read_text() == (report / name).read_text(), name
    mine, theirs = (ReportSummary.load(d / "summary.json") for d in (report, published / "report"))
    assert mine.domains == theirs.domains and mine.timings == theirs.timings

    # A fresh run directory given the published folder takes every seed it holds whole: nothing is trained or
    # scored, and the report is the run's.
    fresh = tmp_path / "fresh"
    for target in ("degaml.pipeline.stages.collect_stage", "degaml.pipeline.stages.generator_stage",
                   "degaml.evaluation.output_scoring.evaluate_adapted"):
        monkeypatch.setattr(target, refuse)
    main(["run", "--config", str(config), "--out", str(fresh), "--published", str(published)])
    monkeypatch.undo()
    assert (fresh / "report" / "in-domain.md").read_text() == tables
    assert "published" not in yaml.safe_load((fresh / "experiment.yaml").read_text())
    # A seed held in part is computed; another experiment's folder is refused.
    from degaml.pipeline.experiment import Experiment
    from degaml.pipeline.publish import take_published

    (published / "seed_1" / "targets" / "letters" / "generated" / "eval" / "results.json").unlink()
    assert take_published(replace(Experiment.load(run), out=tmp_path / "part", published=published)) == [0]
    with pytest.raises(ValueError, match=r"--published .*: another experiment's results \(evaluation differ\)"):
        take_published(replace(Experiment.load(run), out=tmp_path / "other-run", published=published,
                               evaluation=replace(Experiment.load(run).evaluation, limit=3)))
    with pytest.raises(SystemExit):  # a part of another experiment does not merge
        main(["publish", "--run_dir", str(run), "--out", str(tmp_path / "results" / "other"), "--seeds", "[0]"])
        other = yaml.safe_load((tmp_path / "results" / "other" / "experiment.yaml").read_text())
        (tmp_path / "results" / "other" / "experiment.yaml").write_text(
            yaml.safe_dump({**other, "evaluation": {**other["evaluation"], "limit": 3}}))
        main(["publish", "--run_dir", str(run), "--out", str(tmp_path / "results" / "other"), "--seeds", "[1]"])
    assert "holds a part of another experiment (evaluation differ)" in capsys.readouterr().err

    # The directory resumes only under the settings that made it.
    with pytest.raises(SystemExit):
        main(["run", "--config", str(config), "--evaluation.limit", "3"])
    assert "holds a run made with other settings (evaluation differ" in capsys.readouterr().err

    # ... and only in the dtype it was made in (`model.dtype: auto` resolves by machine).
    made = json.loads((run / "precision.json").read_text())
    (run / "precision.json").write_text(json.dumps({"dtype": "float16", "reason": "another machine"}))
    with pytest.raises(SystemExit):
        main(["run", "--config", str(config)])
    assert f"made in float16 (another machine), but here its model runs in {made['dtype']}" in capsys.readouterr().err


def test_a_run_records_its_precision_and_refuses_another(tmp_path):
    from degaml.pipeline.records import RunPrecision

    path = tmp_path / "precision.json"
    RunPrecision("bfloat16", "auto: native bf16").check(path)  # the first start records it
    RunPrecision("bfloat16", "requested").check(path)  # the same dtype, for any reason, resumes
    assert RunPrecision.load(path) == RunPrecision("bfloat16", "auto: native bf16")
    with pytest.raises(ValueError, match=r"precision.json: this run was made in bfloat16 \(auto: native bf16\), but "
                                         r"here its model runs in float32 \(auto: AVX2\)"):
        RunPrecision("float32", "auto: AVX2").check(path)


def test_report_of_a_directory_that_is_not_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path)])
    assert "is not a `degaml run` directory" in capsys.readouterr().err


def test_a_misspelt_setting_is_named(workspace, tmp_path, capsys):
    config, _ = _config(workspace, tmp_path)
    data = yaml.safe_load(config.read_text())
    data["generator"]["stepz"] = 3
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(SystemExit):
        main(["run", "--config", str(config)])
    assert "stepz" in capsys.readouterr().err


CONFIGS = sorted(p.stem for p in (Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS)
def test_shipped_configs_parse(config, capsys):
    path = Path(__file__).parent.parent / "configs" / f"{config}.yaml"
    command = "headroom" if config == "headroom" else "run"  # the one config of another command
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--config", str(path), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    if command == "headroom":
        assert len(printed["tasks"]) == 79 and printed["partition"]["seed"] == 7
    else:
        assert printed["name"] == {"offline": "offline-default"}.get(config, config)


@pytest.mark.parametrize(("base", "overlay", "expected"), [
    ("paper-qwen2.5-0.5b", "pool-best", {"holdout": "all_targets", "recipe": "task-loss-on-union", "tasks": 48}),
    ("offline", "qwen0.5b-cpu", {"model": "qwen2.5-coder-0.5b-instruct", "protocol": "both", "limit": 200}),
    # The verdict's settings, on validation: the sealed split is not read, the policy and the pool stay.
    ("generator-pool", "pool-validation", {"split": "validation", "limit": 150, "seeds": [0], "task_counts": [],
                                           "reward_tasks": 20, "prior_tasks": ["boolq"], "recipe": "task-loss-on-union"}),
])
def test_shipped_overlays_apply_by_name(base, overlay, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--config", base, "--config", overlay, "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    seen = {"holdout": printed["holdout"], "recipe": printed["generator"]["recipe"],
            "tasks": len(printed["tasks"]["meta_training"]), "model": printed["model"]["name"],
            "protocol": printed["evaluation"]["protocol"], "limit": printed["evaluation"]["limit"],
            "split": printed["evaluation"]["split"], "seeds": printed["seeds"], "task_counts": printed["task_counts"],
            "reward_tasks": len(printed["tasks"]["reward"]), "prior_tasks": printed["evaluation"]["prior_tasks"]}
    assert {k: seen[k] for k in expected} == expected


def test_run_with_the_function_space_generator(workspace, tmp_path):
    """The generator options the offline default uses (task loss, residual, relative code, prompts with their
    options) run through every stage of `degaml run`."""
    config, run = _config(workspace, tmp_path)
    settings = yaml.safe_load(config.read_text())
    settings["seeds"] = [0]
    settings["generator"].update({"objective": "task_loss", "residual": True, "stat_code": "relative",
                                  "prompt_format": "with_options", "task_examples": 2, "max_tokens": 32})
    settings["baselines"]["methods"] = ["no-meta"]
    config.write_text(yaml.safe_dump(settings))
    main(["run", "--config", str(config)])
    card = json.loads((run / "seed_0" / "folds" / "all" / "generator" / "config.json").read_text())
    assert card["train"]["objective"] == "task_loss" and card["train"]["stat_code"] == "relative"
    assert (run / "report" / "report.md").is_file()


def test_meta_training_tasks_train_every_fold_from_one_shared_generator(workspace, tmp_path):
    from degaml.generator.record import GeneratorRecord
    from degaml.pipeline.layout import seed_run_in

    config, run = _config(workspace, tmp_path)
    settings = yaml.safe_load(config.read_text())
    colors, numbers = workspace["tasks"]
    letters = settings["tasks"]["out_of_domain"][0]
    settings.update(seeds=[0], shared_generator_steps=2,
                    tasks={"meta_training": [letters], "train": [colors, numbers], "heldout": [numbers],
                           "out_of_domain": []})
    settings["baselines"]["methods"] = ["no-meta", "union"]
    config.write_text(yaml.safe_dump(settings))
    main(["run", "--config", str(config)])
    seed0 = seed_run_in(run, 0)
    shared, fold = GeneratorRecord.load(seed0.generator("shared")), GeneratorRecord.load(seed0.generator("numbers"))
    assert shared.train_tasks == ["letters"]  # no in-domain task, so no target
    assert sorted(fold.train_tasks) == ["colors", "letters"] and fold.heldout_tasks == ["numbers"]
    assert fold.train.init_from == str(seed0.generator("shared"))
    union = json.loads((seed0.method(numbers, "union").output / "degaml.json").read_text())
    assert sorted(union["meta_tasks"]) == sorted([colors, letters])  # the baselines meta-train on them too


def test_all_targets_out_folds_share_the_generator_and_meta_training(workspace, tmp_path, monkeypatch):
    """`holdout: all_targets` leaves every target out of one generator trained on the meta-training tasks; the
    zero-label floors and the meta-trained baselines then learn from those tasks alone too, once for all folds.
    With `none` the only action, DeGAML and the oracle write the generated adapter itself, which is scored once."""
    from degaml.data import task_label
    from degaml.models import AdaptedOutput
    from degaml.pipeline.layout import seed_run_in

    config, run = _config(workspace, tmp_path)
    settings = yaml.safe_load(config.read_text())
    colors, numbers = workspace["tasks"]
    letters = settings["tasks"]["out_of_domain"][0]
    settings.update(seeds=[0], shared_generator_steps=2,
                    tasks={"meta_training": [letters], "train": [colors, numbers], "heldout": [colors, numbers],
                           "out_of_domain": []})
    settings["holdout"] = "all_targets"
    settings["policy"]["actions"] = ["none"]
    settings["baselines"]["methods"] = ["no-meta", "union"]
    config.write_text(yaml.safe_dump(settings))
    main(["run", "--config", str(config)])
    seed0 = seed_run_in(run, 0)
    assert sorted(p.name for p in seed0.trajectories.iterdir()) == ["letters"]  # nothing trains on the others
    assert not seed0.generator("colors").exists() and not seed0.generator("numbers").exists()
    assert [p.name for p in (seed0.fold("shared") / "baselines").iterdir()][0].startswith("union-")
    for target in (colors, numbers):
        union = json.loads((seed0.method(target, "union").output / "degaml.json").read_text())
        mean = json.loads((seed0.method(target, "mean").output / "degaml.json").read_text())
        assert union["meta_tasks"] == [letters] and mean["tasks"] == ["letters"]
        policy = PolicyRecord.load(seed0.policy(task_label(target)))
        assert set(policy.generators.values()) == {str(seed0.generator("shared"))}
        assert policy.in_sample_tasks == []  # that generator never trained on an in-domain task
        digests = {m: AdaptedOutput.load(seed0.method(target, m).output).scoring_digest()
                   for m in ("generated", "degaml", "oracle", "mean")}
        assert digests["generated"] == digests["degaml"] == digests["oracle"] != digests["mean"]
        records = {m: yaml.safe_load((seed0.method(target, m).eval / "config.yaml").read_text())
                   for m in ("generated", "degaml", "oracle", "mean")}
        assert records["degaml"]["scores_of"] == records["oracle"]["scores_of"] == "generated"
        assert "scores_of" not in records["generated"] and "scores_of" not in records["mean"]
        scores = {m: json.loads(seed0.method(target, m).results.read_text())["results"][0]["predictions"]
                  for m in ("generated", "degaml")}
        assert scores["generated"] == scores["degaml"]

    # Another run of the same task pool collects no trajectory, meta-trains no union LoRA and trains no generator:
    # all come from the machine's cache (hard links), identical to the first run's.
    def refuse(*args, **kwargs):
        raise AssertionError("a cached trajectory or meta-training was computed again")

    for target in ("degaml.generator.trajectories._train_trajectory", "degaml.baselines.union.meta_train",
                   "degaml.generator.training.train_generator"):
        monkeypatch.setattr(target, refuse)
    settings.update(out=str(tmp_path / "again"), baselines={**settings["baselines"], "methods": ["union"]})
    config.write_text(yaml.safe_dump(settings))
    main(["run", "--config", str(config)])
    again = seed_run_in(tmp_path / "again", 0)
    first = (seed0.trajectories / "letters" / "manifest.json").read_text()
    assert (again.trajectories / "letters" / "manifest.json").read_text() == first
    assert (again.generator("shared") / "decoder.safetensors").read_bytes() == \
        (seed0.generator("shared") / "decoder.safetensors").read_bytes()
    assert (seed0.method(colors, "union").output / "adapter_model.safetensors").read_bytes() == \
        (again.method(colors, "union").output / "adapter_model.safetensors").read_bytes()
    # and the floors it shares with the first run are not scored again: their scores come from the machine's cache.
    for method in ("base", "union", "mean"):
        record = yaml.safe_load((again.method(colors, method).eval / "config.yaml").read_text())
        assert "scores_from" in record and "scores_from" not in yaml.safe_load(
            (seed0.method(colors, method).eval / "config.yaml").read_text())
        assert json.loads(again.method(colors, method).results.read_text())["results"] == \
            json.loads(seed0.method(colors, method).results.read_text())["results"]


@pytest.mark.parametrize("shared", [True, False])
def test_a_generator_residual_on_union_starts_at_the_union_baseline_of_its_own_tasks(workspace, tmp_path, shared):
    """`generator.residual_base: union`: the run trains union LoRA on the generator's training tasks (the shared
    fold's meta-training tasks, or a fold's own), and the generator starts there; with a zero learning rate its
    output is that adapter up to the last layer's 1%-scale init. Leave-all-targets-out, the union baseline
    scores the very same adapter (one meta-training, cached)."""
    from degaml.generator.generation import Generator
    from degaml.models import delta_relative_error, read_lora_state
    from degaml.pipeline.layout import seed_run_in

    config, run = _config(workspace, tmp_path)
    settings = yaml.safe_load(config.read_text())
    colors, numbers = workspace["tasks"]
    letters = settings["tasks"]["out_of_domain"][0]
    settings.update(seeds=[0], shared_generator_steps=2 if shared else 0,
                    tasks={"meta_training": [letters], "train": [colors, numbers], "heldout": [colors, numbers],
                           "out_of_domain": []})
    settings["holdout"] = "all_targets" if shared else "one_task"
    settings["generator"].update({"steps": 2, "lr": 0.0, "objective": "task_loss",
                                  "residual": True, "residual_base": "union", "stat_code": "relative",
                                  "task_examples": 2, "max_tokens": 32})
    settings["policy"]["actions"] = ["none"]
    settings["baselines"]["methods"] = ["union"]
    config.write_text(yaml.safe_dump(settings))
    main(["run", "--config", str(config)])
    seed0 = seed_run_in(run, 0)
    folds = {"shared": [letters]} if shared else {"colors": [letters, numbers], "numbers": [letters, colors]}
    for fold, tasks in folds.items():
        base = seed0.residual_base(fold)
        assert sorted(json.loads((base / "degaml.json").read_text())["meta_tasks"]) == sorted(tasks)
        assert Generator(seed0.generator(fold)).record.train.residual_base == str(base)
        union = read_lora_state(base)
        target = colors if fold == "shared" else fold
        output = read_lora_state(seed0.method(target, "generated").output)
        assert delta_relative_error(output, union) < 0.1
        # Far from the mean of the training adapters, where a generator that ignored its base would start.
        assert delta_relative_error(read_lora_state(seed0.method(target, "mean").output), union) > 0.5
    if shared:
        for target in (colors, numbers):
            scored = read_lora_state(seed0.method(target, "union").output)
            assert all(torch.equal(scored[k], union[k]) for k in union)


def test_trajectories_start_from_union_lora_of_the_meta_training_tasks(workspace, tmp_path, capsys):
    """`collect.start: union`: union LoRA of the meta-training tasks is trained first, and every trajectory (the
    meta-training tasks' and the targets' own, for the ceiling) starts there, so its checkpoints are union plus
    the task's change; the generator is residual on the same adapter."""
    from degaml.generator.generation import Generator
    from degaml.generator.trajectories import TrajectoryManifest, checkpoint_paths, load_checkpoint
    from degaml.models import delta_relative_error, read_lora_state
    from degaml.pipeline.layout import seed_run_in

    config, run, settings = _all_targets(workspace, tmp_path)
    settings["collect"].update(start="union", lr=1e-6)
    settings["floors"], settings["ceiling"] = [], "trajectory"
    settings["generator"].update({"residual": True, "residual_base": "union", "stat_code": "relative"})
    settings["policy"]["actions"] = ["none"]
    settings["baselines"]["methods"] = ["union"]
    config.write_text(yaml.safe_dump(settings))
    main(["run", "--config", str(config)])
    seed0 = seed_run_in(run, 0)
    base = seed0.residual_base("shared")
    union = read_lora_state(base)
    assert Generator(seed0.generator("shared")).record.train.residual_base == str(base)
    for task in ("letters", "colors", "numbers"):
        assert TrajectoryManifest.load(seed0.trajectories / task).config.start == str(base)
        first = load_checkpoint(checkpoint_paths(seed0.trajectories / task)[0])
        assert delta_relative_error(first, union) < 0.05

    settings.update(holdout="one_task", shared_generator_steps=0)
    config.write_text(yaml.safe_dump(settings))
    with pytest.raises(SystemExit):
        main(["run", "--config", str(config)])
    assert "collect.start: union starts every trajectory from union LoRA" in capsys.readouterr().err


def test_floors_matched_to_the_generators_budget_and_the_target_finetuned_ceiling(workspace, tmp_path):
    """`floors`: union-matched continues the generator's residual base (union LoRA) for the generator's own
    optimizer steps and examples per step on the fold's tasks; target-finetuned is the target's own trajectory
    adapter, a ceiling that reads its train labels, which no generator trains on."""
    from degaml.generator.floors import task_adapters
    from degaml.generator.record import GeneratorRecord
    from degaml.models import delta_relative_error, read_lora_state
    from degaml.pipeline.layout import seed_run_in
    from degaml.pipeline.records import MethodCost

    config, run = _config(workspace, tmp_path)
    settings = yaml.safe_load(config.read_text())
    colors, numbers = workspace["tasks"]
    letters = settings["tasks"]["out_of_domain"][0]
    settings.update(seeds=[0], shared_generator_steps=2,
                    floors=["mean", "retrieval", "union-matched"], ceiling="trajectory", prompt_controls=["swapped", "random"],
                    tasks={"meta_training": [letters], "train": [colors, numbers], "heldout": [colors, numbers],
                           "out_of_domain": []})
    settings["generator"].update({"recipe": "task-loss-on-union", "task_examples": 2, "max_tokens": 32})
    settings["evaluation"].update({"calibrated": ["base", "generated"], "prior_tasks": ["numbers"]})
    settings["policy"]["actions"] = ["none"]
    settings["baselines"]["methods"] = ["union"]
    config.write_text(yaml.safe_dump(settings))
    main(["run", "--config", str(config)])
    seed0 = seed_run_in(run, 0)
    assert GeneratorRecord.load(seed0.generator("numbers")).heldout_tasks == ["numbers"]
    assert GeneratorRecord.load(seed0.generator("colors")).heldout_tasks == ["colors"]
    assert GeneratorRecord.load(seed0.generator("shared")).heldout_tasks == ["colors", "numbers"]
    own = MethodCost.load(seed0.method(numbers, "target-finetuned").cost)
    assert own.ceiling and own.labelled_target_examples > 0
    expected = task_adapters(seed0.trajectories, ["numbers"])["numbers"]
    written = read_lora_state(seed0.method(numbers, "target-finetuned").output)
    assert all(torch.allclose(written[k], expected[k]) for k in expected)
    matched = MethodCost.load(seed0.method(numbers, "union-matched").cost)
    assert not matched.ceiling and matched.labelled_target_examples == 0
    caches = [p for p in (seed0.fold("numbers") / "baselines").iterdir() if p.name.startswith("union-matched-")]
    assert len(caches) == 1 and json.loads((caches[0] / "meta.json").read_text())["steps"] == 2 + 2
    base = read_lora_state(seed0.residual_base("shared"))
    assert delta_relative_error(read_lora_state(seed0.method(numbers, "union-matched").output), base) > 1e-3
    summary = ReportSummary.load(run / "report" / "summary.json")
    tracks = summary.domains["in-domain"].tracks
    assert tracks["ceilings"].methods == ["oracle", "target-finetuned"]
    zero = tracks["zero labels"].methods
    assert {"union-matched", "generated-swapped-prompts", "generated-random-prompts", "base-calibrated",
            "generated-calibrated"} <= set(zero)
    # The swapped control of `numbers` read `colors`' prompts (the next target), the random one random text.
    info = json.loads((seed0.method(numbers, "generated-swapped-prompts").output / "degaml.json").read_text())
    assert info["prompts_from"] == colors
    # So did the retrieval floor's (tests/test_generator_modules.py checks the weights themselves).
    looked_up = {m: json.loads((seed0.method(numbers, m).output / "degaml.json").read_text())
                 for m in ("retrieval", "retrieval-swapped-prompts", "retrieval-random-prompts")}
    assert looked_up["retrieval-swapped-prompts"]["prompts_from"] == colors
    assert looked_up["retrieval-random-prompts"]["prompts_from"] == "random text"
    assert all(sorted(info["weights"]) == ["colors", "letters"] and sum(info["weights"].values()) == pytest.approx(1)
               for info in looked_up.values())
    config = yaml.safe_load((seed0.method(numbers, "base-calibrated").eval / "config.yaml").read_text())
    assert config["calibrated"] == "base" and config["calibration"] in ("batch", "pmi", "none")
    compared = summary.domains["in-domain"].generated_minus
    assert compared[0].startswith("| generated minus | all (2 tasks) | without numbers (1 tasks) |")
    assert any(line.startswith("| generated-swapped-prompts |") for line in compared)
    assert not any(line.startswith("| retrieval-swapped-prompts |") for line in compared)
    retrieval = summary.domains["in-domain"].retrieval_minus
    assert retrieval[0].startswith("| retrieval minus |")
    assert [line.split(" |")[0] for line in retrieval[2:]] == ["| retrieval-swapped-prompts", "| retrieval-random-prompts"]
    report = (run / "report" / "report.md").read_text()
    assert "does the generated change point at the target's own adapter?" in report


def test_seen_tasks_train_the_one_generator_and_the_report_gives_the_recovered_share(workspace, tmp_path):
    """`holdout: seen` (the paper's in-domain reading): one generator trains on the meta-training tasks and the
    targets' own trajectories (train partitions), as do union LoRA and the floors; targets are scored on their
    held-out test items, and the report gives the share of the own LoRA's gain the generated adapter recovers."""
    from degaml.generator.record import GeneratorRecord
    from degaml.pipeline.layout import seed_run_in

    config, run, settings = _all_targets(workspace, tmp_path)
    colors, numbers = workspace["tasks"]
    letters = settings["tasks"]["meta_training"][0]
    settings.update(holdout="seen", floors=["mean"], ceiling="trajectory")
    settings["policy"]["actions"] = ["none"]
    settings["baselines"]["methods"] = ["union"]
    config.write_text(yaml.safe_dump(settings))
    main(["run", "--config", str(config)])
    seed0 = seed_run_in(run, 0)
    card = GeneratorRecord.load(seed0.generator("shared"))
    assert sorted(card.train_tasks) == ["colors", "letters", "numbers"] and card.heldout_tasks == []
    assert not seed0.generator("colors").exists() and not seed0.generator("numbers").exists()
    union = json.loads((seed0.method(colors, "union").output / "degaml.json").read_text())
    assert sorted(union["meta_tasks"]) == sorted([letters, colors, numbers])
    mean = json.loads((seed0.method(numbers, "mean").output / "degaml.json").read_text())
    assert sorted(mean["tasks"]) == ["colors", "letters", "numbers"]
    report = (run / "report" / "report.md").read_text()
    assert "### recovered share of the target's own LoRA's gain (in-domain; seen tasks" in report
    shares = ReportSummary.load(run / "report" / "summary.json").domains["in-domain"].recovered_share
    assert set(shares) == {"base", "union"} and [row.split(" |")[0] for row in shares["base"]] == \
        ["| colors", "| numbers", "| average of 2"]


def test_a_ceiling_of_n_steps_is_trained_fresh_and_gives_the_recovered_share(workspace, tmp_path, capsys):
    """`ceiling: N`: the target-finetuned ceiling is a fresh N-step LoRA on the target's train partition
    (what `degaml headroom` calls the own LoRA), no target trajectory is collected, and a held-out report gives
    (generated - union) / (own - union)."""
    from degaml.baselines.common import load_examples
    from degaml.models import delta_norm, delta_relative_error, load_model, read_lora_state
    from degaml.pipeline.baseline_stage import baseline_setup
    from degaml.pipeline.experiment import Experiment
    from degaml.pipeline.layout import seed_run_in
    from degaml.pipeline.records import MethodCost
    from degaml.sft import fine_tune

    config, run, settings = _all_targets(workspace, tmp_path)
    colors, numbers = workspace["tasks"]
    settings["tasks"].update(train=[], heldout=[], out_of_domain=[colors, numbers])  # configs/targets-with-headroom
    settings.update(floors=[], ceiling=3)
    settings["baselines"]["steps"] = 0
    settings["generator"].update({"recipe": "task-loss-on-union", "task_examples": 2, "max_tokens": 32})
    settings["policy"]["actions"] = ["none"]
    settings["baselines"]["methods"] = ["union"]
    config.write_text(yaml.safe_dump(settings))
    main(["run", "--config", str(config)])
    seed0 = seed_run_in(run, 0)
    assert sorted(p.name for p in seed0.trajectories.iterdir() if p.is_dir()) == ["letters"]
    cost = MethodCost.load(seed0.method(numbers, "target-finetuned").cost)
    assert cost.ceiling and cost.target_steps == 3 and cost.labelled_target_examples > 0
    exp = Experiment.load(run)
    lm = load_model(exp.model)
    setup = replace(baseline_setup(exp, seed0), steps=3)
    expected, _ = fine_tune(lm, setup.lora, load_examples(lm, numbers, setup, 3 * setup.batch_size), 3, setup.lr,
                            setup.batch_size, setup.seed)
    written = read_lora_state(seed0.method(numbers, "target-finetuned").output)
    assert all(torch.allclose(written[k], expected[k], atol=1e-6) for k in expected)
    report = (run / "report" / "report.md").read_text()
    assert "### recovered share of the target's own LoRA's gain (out-of-domain; held-out targets" in report
    # How far the generator moved from its residual base (union LoRA), beside the cosine with the own adapter.
    row = next(line for line in report.splitlines() if line.startswith(f"| 0 | {numbers} |")).rstrip(" |").split(" | ")
    union = read_lora_state(seed0.residual_base("shared"))
    assert float(row[4]) == pytest.approx(delta_relative_error(read_lora_state(seed0.method(numbers, "generated").output),
                                                               union), abs=1e-4)
    assert float(row[5]) == pytest.approx(delta_norm(written) / delta_norm(union), abs=1e-3)

    settings.update(floors=["target-finetuned"], ceiling=None)  # the name it had before `ceiling`
    config.write_text(yaml.safe_dump(settings))
    with pytest.raises(SystemExit):
        main(["run", "--config", str(config)])
    assert "floors: target-finetuned is a ceiling, set by `ceiling: trajectory`" in capsys.readouterr().err


def test_the_scaling_curve_trains_generators_on_the_first_k_meta_training_tasks(workspace, tmp_path):
    from degaml.generator.record import GeneratorRecord
    from degaml.models import read_lora_state
    from degaml.pipeline.layout import seed_run_in

    config, run = _config(workspace, tmp_path)
    settings = yaml.safe_load(config.read_text())
    colors, numbers = workspace["tasks"]
    letters = settings["tasks"]["out_of_domain"][0]
    settings.update(seeds=[0], shared_generator_steps=2, holdout="all_targets", task_counts=[1],
                    tasks={"meta_training": [letters, colors], "train": [numbers], "heldout": [numbers],
                           "out_of_domain": []})
    settings["generator"].update({"recipe": "task-loss-on-union", "task_examples": 2, "max_tokens": 32})
    settings["policy"]["actions"] = ["none"]
    settings["baselines"]["methods"] = ["union"]
    config.write_text(yaml.safe_dump(settings))
    main(["run", "--config", str(config)])
    seed0 = seed_run_in(run, 0)
    assert GeneratorRecord.load(seed0.generator("shared-1")).train_tasks == ["letters"]
    assert sorted(GeneratorRecord.load(seed0.generator("shared")).train_tasks) == ["colors", "letters"]
    union_1 = read_lora_state(seed0.method(numbers, "union-1-tasks").output)
    base_1 = read_lora_state(seed0.residual_base("shared-1"))
    assert all(torch.equal(union_1[k], base_1[k]) for k in base_1)
    assert seed0.method(numbers, "generated-1-tasks").results.is_file()
    report = (run / "report" / "report.md").read_text()
    assert "scaling curve (in-domain)" in report and (run / "report" / "scaling.png").stat().st_size > 0
    assert "| 1 | all |" in report and "| 2 | all |" in report


def test_reward_tasks_teach_the_policy_and_are_never_trained_on(workspace, tmp_path):
    from degaml.generator.record import GeneratorRecord
    from degaml.pipeline.layout import seed_run_in

    config, run = _config(workspace, tmp_path)
    settings = yaml.safe_load(config.read_text())
    colors, numbers = workspace["tasks"]
    letters = settings["tasks"]["out_of_domain"][0]
    digits = tmp_path / "digits.jsonl"
    digits.write_text("".join(json.dumps({"question": f"What follows {d}?", "choices": [str(d + 1), str(d + 2)],
                                          "gold": 0}) + "\n" for d in range(30)))
    settings.update(seeds=[0], shared_generator_steps=2, holdout="all_targets",
                    tasks={"meta_training": [letters], "train": [colors, numbers], "heldout": [colors, numbers],
                           "out_of_domain": [], "reward": [str(digits)]})
    settings["baselines"]["methods"] = ["union"]
    config.write_text(yaml.safe_dump(settings))
    main(["run", "--config", str(config)])
    seed0 = seed_run_in(run, 0)
    assert GeneratorRecord.load(seed0.generator("shared")).train_tasks == ["letters"]
    for target in ("colors", "numbers"):
        assert set(PolicyRecord.load(seed0.policy(target)).generators) == {"digits"}
    rows = read_rows(seed0.rewards("shared") / REWARDS_FILE)
    assert {r.task for r in rows} == {"digits"}  # measured once, for both folds
    # The report says what the policy learnt from: each action's mean reward (hand-computed here) and the best
    # single action on the reward tasks; the rows are published, so the published report says it too.
    labels = list(dict.fromkeys(r.action_label for r in rows))
    means = {a: 100 * statistics.fmean(r.score for r in rows if r.action_label == a) for a in labels}
    report = (run / "report" / "report.md").read_text()
    assert len(labels) > 1 and all(f"| {a} | {m:.1f} |" in report for a, m in means.items())
    assert f"**{max(sorted(labels, key=lambda a: a != 'none'), key=means.get)}**" in report
    published = tmp_path / "published"
    main(["publish", "--run_dir", str(run), "--out", str(published)])
    assert read_rows(published / "seed_0" / "folds" / "shared" / "rewards" / REWARDS_FILE) == rows
    main(["report", str(published)])
    section = report[report.index("## the policy's reward tasks"):].split("\n## ")[0]
    assert section in (published / "report" / "report.md").read_text()
    settings["tasks"]["reward"] = [colors]
    config.write_text(yaml.safe_dump(settings))
    with pytest.raises(SystemExit):
        main(["run", "--config", str(config)])


def test_a_run_refuses_a_floor_it_cannot_build(workspace, tmp_path, capsys):
    config, _ = _config(workspace, tmp_path)
    settings = yaml.safe_load(config.read_text())
    settings["floors"] = ["mean", "union-matched"]
    config.write_text(yaml.safe_dump(settings))
    with pytest.raises(SystemExit):
        main(["run", "--config", str(config)])
    assert "union-matched matches the budget of a generator residual on union LoRA" in capsys.readouterr().err


def test_a_meta_training_task_is_never_a_target(workspace):
    from degaml.pipeline.experiment import folds
    from degaml.pipeline.settings import TaskSets

    colors, numbers = workspace["tasks"]
    with pytest.raises(ValueError, match=r"tasks.meta_training \['numbers'\] are also in-domain tasks or targets"):
        folds(TaskSets(meta_training=[numbers], train=[colors, numbers], heldout=[numbers], out_of_domain=[]))


def _all_targets(ws, tmp_path):
    """One seed, both local tasks as targets of one shared generator trained on `letters` alone."""
    config, run = _config(ws, tmp_path)
    settings = yaml.safe_load(config.read_text())
    colors, numbers = ws["tasks"]
    letters = settings["tasks"]["out_of_domain"][0]
    settings.update(seeds=[0], shared_generator_steps=2, holdout="all_targets",
                    tasks={"meta_training": [letters], "train": [colors, numbers], "heldout": [colors, numbers],
                           "out_of_domain": []})
    return config, run, settings


def test_single_actions_score_each_action_alone_and_a_random_one(workspace, tmp_path):
    from degaml.adaptation.policy import PolicyRecord
    from degaml.models import AdaptedOutput
    from degaml.pipeline.layout import seed_run_in
    from degaml.pipeline.records import MethodCost

    config, run, settings = _all_targets(workspace, tmp_path)
    colors, numbers = workspace["tasks"]
    settings["policy"]["single_actions"] = True
    settings["policy"]["compare"] = ["rest_em"]
    settings["baselines"]["methods"] = ["union"]
    config.write_text(yaml.safe_dump(settings))
    main(["run", "--config", str(config)])
    seed0 = seed_run_in(run, 0)
    labels = ["none", "mixing variant=rank_half lam=0.5"]
    for target in (colors, numbers):
        for label in labels:
            method = "action-" + label.replace(" ", "_")
            assert MethodCost.load(seed0.method(target, method).cost).action == label
            assert seed0.method(target, method).results.is_file()
        drawn = MethodCost.load(seed0.method(target, "random-action").cost).action
        assert drawn in labels
        # An action applied already is copied with its cost, not adapted again: the same seconds, to the digit.
        chosen = MethodCost.load(seed0.method(target, "degaml").cost).action
        pairs = [("random-action", "action-" + drawn.replace(" ", "_")),
                 ("action-" + chosen.replace(" ", "_"), "generated" if chosen == "none" else "degaml")]
        for method, source in pairs:
            assert MethodCost.load(seed0.method(target, method).cost).seconds == \
                MethodCost.load(seed0.method(target, source).cost).seconds
        # `none` alone is the generated adapter: scored once.
        record = yaml.safe_load((seed0.method(target, "action-none").eval / "config.yaml").read_text())
        assert record["scores_of"] == "generated"
        # The oracle scored the actions' own outputs and kept the best one's.
        best = MethodCost.load(seed0.method(target, "oracle").cost).action
        chosen = seed0.method(target, "action-" + best.replace(" ", "_")).output
        assert AdaptedOutput.load(seed0.method(target, "oracle").output).scoring_digest() == \
            AdaptedOutput.load(chosen).scoring_digest()
        # The ReST^EM policy, fitted on the same rewards, is applied as its own method: its choice's output.
        choice = MethodCost.load(seed0.method(target, "degaml-rest_em").cost).action
        assert choice in labels and seed0.method(target, "degaml-rest_em").results.is_file()
        assert AdaptedOutput.load(seed0.method(target, "degaml-rest_em").output).scoring_digest() == \
            AdaptedOutput.load(seed0.method(target, "action-" + choice.replace(" ", "_")).output).scoring_digest()
    for policy in seed0.root.glob("folds/*/policy-rest_em/policy.json"):  # one per fold, beside its REINFORCE one
        assert PolicyRecord.load(policy.parent).config.algorithm == "rest_em"
        assert PolicyRecord.load(policy.parent.parent / "policy").config.algorithm == "reinforce"
    scores = (run / "report" / "scores.csv").read_text()
    assert "random-action" in scores and "degaml-rest_em" in scores
    summary = ReportSummary.load(run / "report" / "summary.json")
    verdicts = next(t.verdicts for name, t in summary.domains["in-domain"].tracks.items() if name.startswith("zero"))
    assert any(" uniform-action: " in line for line in verdicts)
    # The generated adapter is not compared with itself under its action's name.
    generated_minus = summary.domains["in-domain"].generated_minus
    assert any("action-mixing" in line for line in generated_minus)
    assert not any("action-none" in line for line in generated_minus)


def test_the_uniform_action_is_the_per_item_mean_of_the_single_actions():
    from degaml.pipeline.report.verdicts import expected_correctness

    correct = {"action-a": {"t": {"1": 1.0, "2": 0.0, "3": 1.0}, "u": {"9": 1.0}},
               "action-b": {"t": {"1": 0.0, "2": 0.0, "3": 0.5}},
               "action-c": {"t": {"1": 1.0, "2": 1.0}}}
    # Only the tasks and items every action scored: "u" (a's alone) and item 3 (not c's) drop out.
    assert expected_correctness(correct, ["action-a", "action-b", "action-c"]) == {"t": {"1": 2 / 3, "2": 1 / 3}}


@pytest.mark.parametrize("protocol", ["both", "generative"])
def test_a_run_scores_both_protocols_and_the_report_sets_them_side_by_side(workspace, tmp_path, protocol):
    from degaml.pipeline.layout import seed_run_in

    config, run, settings = _all_targets(workspace, tmp_path)
    colors, numbers = workspace["tasks"]
    settings["policy"]["actions"] = ["none", "tts k=3 combine=vote"]
    if protocol == "both":  # every action alone, the calibrated output among them: scored in log-likelihood only
        settings["policy"]["actions"].append("latent objective=calibrate steps=0")
        settings["policy"]["single_actions"] = True
    settings["baselines"]["methods"] = ["union"]
    settings["evaluation"]["protocol"] = protocol
    if protocol == "both":  # generation is the costly pass: only the protocols' comparison methods take it
        settings["evaluation"]["generative_methods"] = ["base", "generated", "union", "degaml"]
    config.write_text(yaml.safe_dump(settings))
    main(["run", "--config", str(config)])
    seed0 = seed_run_in(run, 0)
    if protocol == "both":
        calibrated = seed0.method(colors, "action-latent_objective=calibrate_steps=0")
        assert calibrated.results.is_file() and not calibrated.results_for("generative").is_file()
        mean = seed0.method(colors, "mean")
        assert mean.results.is_file() and not mean.results_for("generative").is_file()
    for method in ("base", "generated", "union", *(["mean"] if protocol == "generative" else [])):
        generative = json.loads(seed0.method(colors, method).results_for("generative").read_text())
        assert generative["results"][0]["protocol"] == "generative"
        assert seed0.method(colors, method).results.is_file() == (protocol == "both")
    text = (run / "report" / "report.md").read_text()
    if protocol == "both":
        assert "## log-likelihood against the generative protocol" in text
        assert "Every LoRA of this run learned the log-likelihood protocol's answer format" in text
        # The share of generative answers naming no valid letter, averaged over the in-domain targets.
        shares = []
        for target in (colors, numbers):
            (result,) = json.loads(seed0.method(target, "base").results_for("generative").read_text())["results"]
            shares.append(result["metrics"]["unparseable"] / result["num_items"])
        base_row = next(line for line in text.splitlines() if line.startswith("| base | ") and line.endswith("% |"))
        assert base_row.endswith(f"| {100 * sum(shares) / 2:.1f}% |")
        gain = next(line for line in text.splitlines() if line.startswith("| generalization: generated minus base |"))
        assert gain.count("[") == 2 and gain.count("items)") == 2  # an interval in each protocol
    else:
        assert "generative protocol, acc of the letter named" in text and "against the generative protocol" not in text
    # The answer prior: per method, the share of a target's items given its most-named letter, averaged.
    shares = []
    for target in (colors, numbers):
        (result,) = json.loads(seed0.method(target, "base").results_for("generative").read_text())["results"]
        named = [p["pred"] for p in result["predictions"]]
        shares.append(max(named.count(p) for p in named) / len(named))
    prior = text.split("## the answer prior (generative protocol)")[1]
    assert next(line for line in prior.splitlines() if line.startswith("| base | ")).endswith(
        f"| {100 * sum(shares) / 2:.0f}% |")
    # Every LoRA trains in the format it is scored in: `both` keeps log-likelihood's, generative alone its own.
    expected = "generative" if protocol == "generative" else "loglikelihood"
    manifests = [json.loads(p.read_text()) for p in seed0.trajectories.glob("*/manifest.json")]
    assert manifests and {m["config"]["answer_format"] for m in manifests} == {expected}
    card = json.loads((seed0.generator("shared") / "config.json").read_text())
    assert card["train"]["answer_format"] == expected


def test_generative_methods_pick_what_a_both_protocols_run_generates_for():
    from degaml.pipeline.settings import EvaluationSettings

    picked = EvaluationSettings(protocol="both", generative_methods=["base", "degaml"])
    assert picked.scores("mean", "loglikelihood") and picked.scores("degaml", "generative")
    assert not picked.scores("mean", "generative")
    every = EvaluationSettings(protocol="both")
    assert every.scores("mean", "generative") and every.scores("mean", "loglikelihood")
    assert not EvaluationSettings(protocol="generative").scores("mean", "loglikelihood")
    with pytest.raises(ValueError, match="generative_methods .* needs protocol both"):
        EvaluationSettings(protocol="loglikelihood", generative_methods=["base"])


@pytest.mark.parametrize("protocol, setting, value, message", [
    ("both", "generative_methods", "[base, lorahubb]", "evaluation.generative_methods: ['lorahubb'] are not methods "
     "of this run"),
    ("generative", "calibrated", "[base]", "evaluation.calibrated re-weighs log-likelihood scores"),
])
def test_evaluation_settings_that_cannot_hold_are_refused(workspace, tmp_path, capsys, protocol, setting, value,
                                                          message):
    config, _ = _config(workspace, tmp_path)
    with pytest.raises(SystemExit):
        main(["run", "--config", str(config), "--evaluation.protocol", protocol, f"--evaluation.{setting}", value])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("config", CONFIGS)
def test_every_shipped_config_states_its_time(config):
    """A config's header says how long it takes on 2 cores (or that it was not timed), as docs/results.md's cost
    table does: a researcher knows before starting whether it fits an afternoon."""
    header = (Path(__file__).parent.parent / "configs" / f"{config}.yaml").read_text().split("\n\n")[0]
    assert any(line.startswith(("# Time on 2 cores: ", "# Time: not timed")) for line in header.splitlines()), config
