"""The records a run writes (cost.json, timings.json, experiment.yaml, results.json) round-trip through their
owners' save and load, and a damaged file is refused with its path named."""

import json
from pathlib import Path

import pytest

from degaml.config import LoraSettings, ModelConfig, PartitionConfig
from degaml.generator.record import GeneratorTrainConfig
from degaml.generator.settings import CollectConfig
from degaml.pipeline.experiment import Experiment
from degaml.pipeline.records import MethodCost, StageTimings
from degaml.pipeline.settings import BaselineSettings, EvaluationSettings, PolicySettings, TaskSets


def test_method_cost_round_trips_and_refuses_unknown_fields(tmp_path):
    cost = MethodCost(seconds=1.5, labelled_target_examples=16, choice="degaml", peak_rss_mb=900.0)
    cost.save(tmp_path / "cost.json")
    assert MethodCost.load(tmp_path / "cost.json") == cost
    (tmp_path / "old.json").write_text(json.dumps({"seconds": 1.0, "labelled_target_examples": 0, "reference": True}))
    with pytest.raises(ValueError, match=r"old.json: unknown field\(s\) \['reference'\]"):
        MethodCost.load(tmp_path / "old.json")
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(ValueError, match="garbage.json: not a readable MethodCost record"):
        MethodCost.load(tmp_path / "garbage.json")


def test_stage_timings_add_seconds_and_keep_the_larger_peak(tmp_path):
    timings = StageTimings()
    timings.add("collect", 10.0, 500.0)
    timings.add("collect", 5.0, 400.0)
    timings.save(tmp_path / "timings.json")
    loaded = StageTimings.load(tmp_path / "timings.json")
    assert loaded.seconds == {"collect": 15.0} and loaded.peak_rss_mb == {"collect": 500.0}
    assert StageTimings.load(tmp_path / "missing.json") == StageTimings()


def _experiment(out: Path) -> Experiment:
    return Experiment(name="x", out=out, model=ModelConfig(name="m", dtype="float32"), lora=LoraSettings(r=2, alpha=4),
                      seeds=[0, 1], partition=PartitionConfig(seed=3), tasks=TaskSets(meta_training=["a"]),
                      collect=CollectConfig(checkpoints=3), generator=GeneratorTrainConfig(recipe="task-loss", steps=2),
                      policy=PolicySettings(), evaluation=EvaluationSettings(limit=7), baselines=BaselineSettings(),
                      holdout="one_task", floors=["mean"], progress=False)


def test_the_experiment_record_round_trips_with_typed_sections(tmp_path):
    experiment = _experiment(tmp_path)
    experiment.save(tmp_path / "experiment.yaml")
    loaded = Experiment.load(tmp_path)
    assert loaded == experiment
    assert isinstance(loaded.baselines.union, type(experiment.baselines.union))
    assert loaded.generator.objective == "task_loss" and loaded.generator.applied_recipe == "task-loss"
    assert loaded.partition.seed == 3


def test_a_run_trains_in_the_answer_format_of_the_protocol_it_scores_in(tmp_path):
    from dataclasses import replace

    base = _experiment(tmp_path)
    assert base.collect.answer_format == base.generator.answer_format == "loglikelihood"
    for protocol, expected in (("generative", "generative"), ("both", "loglikelihood")):
        run = replace(base, evaluation=EvaluationSettings(limit=7, protocol=protocol))
        assert run.answer_format == run.collect.answer_format == run.generator.answer_format == expected
    with pytest.raises(ValueError, match="collect.answer_format: generative disagrees with evaluation.protocol"):
        replace(base, collect=CollectConfig(answer_format="generative"))


def test_settings_added_at_their_neutral_value_leave_cache_keys_as_they_were():
    from dataclasses import asdict

    from degaml.generator.record import GeneratorTrainConfig
    from degaml.io import key_fields

    added = ("answer_format", "start")
    old = {k: v for k, v in asdict(CollectConfig()).items() if k not in added}  # before the settings existed
    assert key_fields(CollectConfig()) == old
    assert key_fields(CollectConfig(answer_format="generative")) == {**old, "answer_format": "generative"}
    assert key_fields(CollectConfig(start="adapter")) == {**old, "start": "adapter"}
    recipe = {k: v for k, v in asdict(GeneratorTrainConfig()).items() if k not in ("answer_format", "choice_options")}
    assert key_fields(GeneratorTrainConfig()) == recipe
    assert key_fields(GeneratorTrainConfig(choice_options=4)) == {**recipe, "choice_options": 4}


def test_a_damaged_experiment_record_names_the_file_and_key(tmp_path):
    _experiment(tmp_path).save(tmp_path / "experiment.yaml")
    text = (tmp_path / "experiment.yaml").read_text().replace("floors:", "flors:")
    (tmp_path / "experiment.yaml").write_text(text)
    with pytest.raises(ValueError, match=r"experiment.yaml: unknown key\(s\) \['flors'\] for Experiment"):
        Experiment.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a `degaml run` directory"):
        Experiment.load(tmp_path / "nowhere")


def test_results_are_read_through_their_owner(tmp_path):
    from degaml.evaluation.harness import TaskResult, read_results
    from degaml.evaluation.metrics import Prediction

    result = TaskResult(task="t", protocol="loglikelihood", split="test", num_items=2, metrics={"acc": 0.5},
                        seconds=1.0, predictions=[Prediction("a", 0, 0, 1, [0, -1]),
                                                  Prediction("b", 1, 0, 1, [0, -1])])
    (tmp_path / "results.json").write_text(json.dumps({"results": [result.to_dict()]}))
    (loaded,) = read_results(tmp_path / "results.json")
    assert loaded == result
    assert loaded.correctness("acc") == {"a": 1.0, "b": 0.0} and loaded.correctness("acc_norm") == {"a": 0.0, "b": 1.0}
    assert loaded.majority_rate() == 0.5
    (tmp_path / "bad.json").write_text(json.dumps({"results": [{"task": "t"}]}))
    with pytest.raises(ValueError, match="bad.json: not an evaluation's results.json"):
        read_results(tmp_path / "bad.json")
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["results"][0]["predictions"][0] == {"id": "a", "gold": 0, "pred": 0, "pred_norm": 1, "logprobs": [0, -1]}
    record["results"][0]["predictions"][0]["confidence"] = 0.9
    (tmp_path / "bad.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"bad.json: not an evaluation's results.json .*\['confidence'\]"):
        read_results(tmp_path / "bad.json")


def test_a_compared_policy_algorithm_is_not_the_policy_algorithm_itself():
    assert PolicySettings(algorithm="reinforce", compare=["rest_em"]).compare == ["rest_em"]
    with pytest.raises(ValueError, match=r"policy.compare: rest_em is policy.algorithm already"):
        PolicySettings(algorithm="rest_em", compare=["rest_em"])


def test_a_context_budget_below_two_tokens_is_refused_naming_its_section():
    assert PolicySettings(max_length=256).max_length == 256
    with pytest.raises(ValueError, match=r"policy\.max_length must be >= 2"):
        PolicySettings(max_length=1)
    with pytest.raises(ValueError, match=r"evaluation\.max_length must be >= 2"):
        EvaluationSettings(max_length=0)


def test_a_refinement_record_reads_back_from_what_an_adaptation_writes():
    from degaml.adaptation.base import AdaptationResult, Refinement, outcome

    written = outcome(AdaptationResult("ttt", {}, {}, 0.25, fell_back=True, reason="non-finite loss"), 0.0)
    done = Refinement.from_info({**written, "action": {"family": "ttt"}})
    assert done.fell_back and done.reason == "non-finite loss" and done.seconds > 0
    assert written["adaptation_seconds"] == 0.25
    with pytest.raises(ValueError, match="out/degaml.json: an adapted output's record lacks seconds"):
        Refinement.from_info({"fell_back": False}, "out/degaml.json")


def test_a_run_saved_before_the_ceiling_setting_loads_with_its_ceiling(tmp_path):
    """Before `ceiling`, the target-finetuned ceiling was a floor (its own trajectory's adapter): such a saved
    experiment.yaml loads in today's names, and a new config that still names it a floor is refused."""
    import yaml

    from degaml.pipeline.experiment import SETTINGS_FILE, Experiment

    Experiment(name="old", floors=["mean"]).save(tmp_path / SETTINGS_FILE)
    record = yaml.safe_load((tmp_path / SETTINGS_FILE).read_text())
    del record["ceiling"]
    record["floors"] = ["mean", "target-finetuned"]
    (tmp_path / SETTINGS_FILE).write_text(yaml.safe_dump(record))
    loaded = Experiment.load(tmp_path)
    assert loaded.floors == ["mean"] and loaded.ceiling == "trajectory" and loaded.ceiling_methods == ["target-finetuned"]
    with pytest.raises(ValueError, match="floors: target-finetuned is a ceiling"):
        Experiment(floors=["mean", "target-finetuned"])
    (tmp_path / SETTINGS_FILE).write_text(yaml.safe_dump({"name": "cut", "floors": ["mean"]}))
    with pytest.raises(ValueError, match="not a whole experiment record"):
        Experiment.load(tmp_path)
    for bad in (0, True, "own"):
        with pytest.raises(ValueError, match="ceiling must be null, trajectory or a step count"):
            Experiment(ceiling=bad)


def test_the_report_summary_round_trips_and_names_an_unknown_field(tmp_path):
    from degaml.pipeline.records import StageTimings
    from degaml.pipeline.report.summary import DomainSummary, ReportSummary, TrackSummary

    summary = ReportSummary("header", {"in-domain": DomainSummary(
        ["boolq"], {"boolq": 0.62}, {"zero labels": TrackSummary(["base", "generated"], ["- DeGAML ..."],
                                                                 {"base": 0.5, "generated": 0.55}),
                                     "ceilings": TrackSummary(["oracle"], ["- DeGAML - oracle ..."])},
        recovered_share={"union": ["| boolq | +1.0 | +2.0 | 0.50 |"]})}, ["seed 0: boolq: union"],
        {"seed_0": StageTimings({"collect": 1.5}, {"collect": 900.0})})
    path = summary.save(tmp_path / "summary.json")
    assert ReportSummary.load(path) == summary
    record = json.loads(path.read_text())
    record["domains"]["in-domain"]["tracks"]["ceilings"]["verdict"] = []
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"summary.json: domains: in-domain: tracks: ceilings: unknown key\(s\) \['verdict'\]"):
        ReportSummary.load(path)


def test_a_meta_training_record_round_trips_and_reads_the_flat_caches_written_before_it(tmp_path):
    from degaml.pipeline.records import MetaTraining

    record = MetaTraining(12.5, ["sciq", "boolq"], 900.0, log={"meta_losses": [1.0, 0.5]})
    assert MetaTraining.load(record.save(tmp_path / "meta.json")) == record
    assert record.as_log() == {"meta_losses": [1.0, 0.5], "meta_train_seconds": 12.5, "meta_tasks": ["sciq", "boolq"],
                               "meta_peak_rss_mb": 900.0}
    (tmp_path / "old.json").write_text(json.dumps(record.as_log()))  # what a cache held before the record
    assert MetaTraining.load(tmp_path / "old.json") == record
    (tmp_path / "bad.json").write_text(json.dumps({"seconds": 1.0, "tasks": [], "secs": 2}))
    with pytest.raises(ValueError, match=r"bad.json: unknown field\(s\) \['secs'\] in a MetaTraining record"):
        MetaTraining.load(tmp_path / "bad.json")


def test_a_run_saved_when_the_policy_algorithm_was_called_method_loads(tmp_path):
    import yaml

    from degaml.pipeline.experiment import SETTINGS_FILE, Experiment

    Experiment(name="old").save(tmp_path / SETTINGS_FILE)
    record = yaml.safe_load((tmp_path / SETTINGS_FILE).read_text())
    del record["policy"]["algorithm"]
    record["policy"]["method"] = "rest_em"
    (tmp_path / SETTINGS_FILE).write_text(yaml.safe_dump(record))
    assert Experiment.load(tmp_path).policy.algorithm == "rest_em"


def test_run_metadata_round_trips_and_names_an_unknown_field():
    from degaml.io import Compute, RunMetadata, run_metadata

    compute = {"device": "cpu", "dtype": "float32", "reason": "asked", "cpu": "x86_64 AVX2, no bf16 flags"}
    meta = RunMetadata.from_dict(run_metadata(3, compute), "results.json: meta")
    assert meta.seed == 3 and meta.compute == Compute(**compute) and meta.data_packages is not None
    assert "compute" not in run_metadata(3)  # no model ran: no compute recorded, as before the record
    assert RunMetadata.from_dict({"seed": 0}, "old").code == ""  # written before the commit was kept
    with pytest.raises(ValueError, match=r"results.json: meta: not run metadata \(unknown fields \['gpu'\]\)"):
        RunMetadata.from_dict({"seed": 0, "gpu": "h100"}, "results.json: meta")
    with pytest.raises(ValueError, match="results.json: meta: not run metadata"):
        RunMetadata.from_dict({"seed": 0, "compute": {"device": "cpu"}}, "results.json: meta")


def test_training_progress_round_trips_and_a_damaged_one_is_refused(tmp_path):
    from degaml.generator.record import TRAINED_FILE, TrainingProgress

    assert TrainingProgress.load(tmp_path) is None
    TrainingProgress(3, 5).save(tmp_path)
    assert TrainingProgress.load(tmp_path) == TrainingProgress(3, 5) and not TrainingProgress(3, 5).finished
    (tmp_path / TRAINED_FILE).write_text(json.dumps({"step": 1, "total": 5}))
    with pytest.raises(ValueError, match=f"{TRAINED_FILE}: not a training progress record"):
        TrainingProgress.load(tmp_path)


def test_a_policy_record_round_trips_and_reads_one_saved_when_algorithm_was_method(tmp_path):
    from degaml.adaptation.actions import default_actions
    from degaml.adaptation.policy import (
        POLICY_FILE,
        LinearPolicy,
        PolicyConfig,
        PolicyRecord,
        load_policy,
        save_policy,
    )

    actions = default_actions()[:2]
    save_policy(LinearPolicy(3, actions), PolicyConfig(algorithm="rest_em"), tmp_path, extra={"tasks": ["a"], "limit": 8})
    record = PolicyRecord.load(tmp_path)
    assert record.config.algorithm == "rest_em" and record.tasks == ["a"] and record.limit == 8 and record.state_dim == 3
    assert [a.label for a in load_policy(tmp_path).actions] == [a.label for a in actions]
    old = json.loads((tmp_path / POLICY_FILE).read_text())
    old["config"]["method"] = old["config"].pop("algorithm")
    (tmp_path / POLICY_FILE).write_text(json.dumps(old))
    assert PolicyRecord.load(tmp_path).config.algorithm == "rest_em"
    (tmp_path / POLICY_FILE).write_text(json.dumps({**old, "baseline": 0.5}))
    with pytest.raises(ValueError, match=f"{POLICY_FILE}: not a policy record"):
        PolicyRecord.load(tmp_path)
