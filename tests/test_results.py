"""The committed results: every run under results/ rebuilds its committed report from its per-item predictions
alone (no model), and every headline figure the README states is what those predictions give."""

import json
import re
import shutil
from functools import cache
from pathlib import Path

import pytest
import yaml

from degaml.pipeline.report import ReportSummary

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "results"
PUBLISHED = sorted(p.name for p in RESULTS.iterdir() if (p / "experiment.yaml").is_file()) if RESULTS.is_dir() else []
HEADROOM = sorted(p.name for p in RESULTS.iterdir() if (p / "headroom.yaml").is_file()) if RESULTS.is_dir() else []
"""Published `degaml headroom` tables."""

# Each figure the README's results table states: (run under results/, what it computes, its arguments); the
# README writes it as f"{label} {figure}" with the label given here.
HEADLINES = [
    ("paper-qwen-heldout", "difference", ("generated", "union"), "generated − union"),
    ("paper-qwen-heldout", "difference", ("generated", "base"), "generated − base"),
    ("paper-qwen-heldout", "difference", ("degaml", "generated"), "DeGAML − generated"),
    ("paper-qwen-seen", "difference", ("generated", "union"), "generated − union"),
    ("paper-qwen-seen", "difference", ("generated", "base"), "generated − base"),
    ("paper-qwen-seen", "difference", ("degaml", "generated"), "DeGAML − generated"),
    ("paper-qwen-seen", "share", ("generated", "base", "target-finetuned"), "recovered share over base"),
    ("adaptation-headroom", "difference", ("degaml", "generated"), "DeGAML − generated"),
    ("adaptation-headroom", "difference", ("degaml", "random-action"), "DeGAML − random action"),
    ("adaptation-headroom", "difference", ("degaml-k", "no-meta"), "DeGAML-k − no-meta"),
    ("main-job", "difference", ("generated", "union"), "generated − union"),
    ("main-job", "difference", ("degaml", "generated"), "DeGAML − generated"),
    ("main-job", "difference", ("generated", "base"), "generated − base"),
    ("seen-tasks", "difference", ("generated", "union"), "generated − union"),
    ("seen-tasks", "difference", ("generated", "base"), "generated − base"),
    ("seen-tasks", "share", ("generated", "base", "target-finetuned"), "recovered share over base"),
    ("seen-tasks", "share", ("generated", "union", "target-finetuned"), "recovered share over union"),
    ("seen-headroom-recon", "difference", ("generated", "union"), "generated − union"),
    ("seen-headroom-recon", "difference", ("generated", "base"), "generated − base"),
    ("seen-headroom-recon", "difference", ("target-finetuned", "base"), "own 60-step trajectory adapter − base"),
    ("seen-headroom-recon", "difference", ("generated", "target-finetuned"), "generated − own trajectory adapter"),
    ("seen-headroom-recon", "share", ("generated", "base", "target-finetuned"), "recovered share over base"),
    ("seen-headroom-recon", "share", ("generated", "union", "target-finetuned"), "over union"),
    ("seen-headroom-720", "share", ("generated", "base", "target-finetuned"), "recovered share over base"),
    ("seen-headroom-choice-anchored-validation", "share", ("generated", "base", "target-finetuned"),
     "recovered share over base"),
    ("seen-headroom-480", "difference", ("generated", "union"), "generated − union"),
    ("seen-headroom-480", "difference", ("generated", "base"), "generated − base"),
    ("seen-headroom-480", "share", ("generated", "base", "target-finetuned"), "recovered share over base"),
    ("seen-headroom-480", "share", ("generated", "union", "target-finetuned"), "over union"),
    ("seen-headroom", "difference", ("generated", "union"), "generated − union"),
    ("seen-headroom", "difference", ("generated", "base"), "generated − base"),
    ("seen-headroom", "difference", ("target-finetuned", "base"), "own 60-step LoRA − base"),
    ("seen-headroom", "share", ("generated", "base", "target-finetuned"), "recovered share over base"),
    ("seen-headroom", "share", ("generated", "union", "target-finetuned"), "over union"),
    ("targets-with-headroom-recon", "difference", ("generated", "union"), "generated − union"),
    ("targets-with-headroom", "difference", ("generated", "union"), "generated − union"),
    ("targets-with-headroom", "difference", ("generated", "base"), "generated − base"),
    ("targets-with-headroom", "difference", ("target-finetuned", "union"), "own 60-step LoRA − union"),
    ("targets-with-headroom", "share", ("generated", "union", "target-finetuned"),
     "recovered share (generated − union) / (own − union)"),
]


@cache
def _correctness(run: str) -> tuple[dict, list[str]]:
    from degaml.data import task_label
    from degaml.pipeline.report.verdicts import item_correctness

    settings = yaml.safe_load((RESULTS / run / "experiment.yaml").read_text())
    targets = settings["tasks"]["heldout"] + settings["tasks"]["out_of_domain"]
    protocol = settings["evaluation"]["protocol"]  # a run scored in both protocols is quoted in the log-likelihood one
    protocol = "loglikelihood" if protocol == "both" else protocol
    return item_correctness(RESULTS / run, protocol), [task_label(t) for t in targets]


def figure(run: str, kind: str, args: tuple[str, ...]) -> str:
    from degaml.evaluation.statistics import recovered_share
    from degaml.pipeline.report.verdicts import paired_difference

    correct, tasks = _correctness(run)
    if kind == "difference":
        return str(paired_difference(correct, *args, tasks))
    ids = {t: sorted(set.intersection(*(set(correct[m][t]) for m in args))) for t in tasks}
    return str(recovered_share(*({t: [correct[m][t][i] for i in ids[t]] for t in tasks} for m in args)))


@pytest.mark.parametrize("run", PUBLISHED)
def test_a_published_run_rebuilds_its_committed_report_from_its_predictions_alone(run, tmp_path):
    from degaml.pipeline.report import build_report

    copy = tmp_path / run
    shutil.copytree(RESULTS / run, copy, ignore=shutil.ignore_patterns("report"))
    rebuilt = build_report(copy)
    committed = RESULTS / run / "report"
    tables = sorted(p.name for p in committed.iterdir() if p.suffix in (".md", ".csv"))
    assert "report.md" in tables and "scores.csv" in tables
    for name in tables:
        assert (rebuilt / name).read_text() == (committed / name).read_text(), f"results/{run}/report/{name}"
    assert ReportSummary.load(rebuilt / "summary.json").domains == ReportSummary.load(committed / "summary.json").domains


@pytest.mark.parametrize(("run", "kind", "args", "label"), [h for h in HEADLINES if h[0] in PUBLISHED])
def test_each_headline_figure_in_the_readme_is_what_the_predictions_give(run, kind, args, label):
    stated = f"{label} {figure(run, kind, args)}"
    assert stated in (ROOT / "README.md").read_text(), f"README.md should state {stated!r} (results/{run})"


def test_every_run_the_readme_quotes_is_published():
    quoted = set(re.findall(r"results/([A-Za-z0-9][\w.-]*)", (ROOT / "README.md").read_text()))
    assert {run for run, *_ in HEADLINES} | quoted <= set(PUBLISHED) | set(HEADROOM)


@pytest.mark.parametrize("table", HEADROOM)
def test_a_published_headroom_table_rebuilds_from_its_predictions_and_the_readme_states_its_count(table, tmp_path):
    from degaml.pipeline.headroom import table_rows, write_table

    copy = tmp_path / table
    shutil.copytree(RESULTS / table, copy, ignore=shutil.ignore_patterns("headroom.md", "headroom.json"))
    assert write_table(copy) == (RESULTS / table / "headroom.md").read_text(), f"results/{table}/headroom.md"
    rows, _ = table_rows(copy)
    room = sum(r.headroom.difference >= 5 for r in rows)
    stated = f"{room} of {len(rows)} tasks measured have h >= 5 points"
    assert stated in (ROOT / "README.md").read_text(), f"README.md should state {stated!r} (results/{table})"


def test_the_verdict_on_targets_with_headroom_takes_exactly_the_tables_chosen_targets():
    """configs/targets-with-headroom.yaml's targets are the published table's tasks whose headroom interval is
    above zero, chosen before any generator was scored on them; none is a meta-training task, which are the first
    20 others of the pool's seeded order."""
    table = json.loads((RESULTS / "headroom" / "headroom.json").read_text())
    config = yaml.safe_load((ROOT / "configs" / "targets-with-headroom.yaml").read_text())
    pool = yaml.safe_load((ROOT / "configs" / "tasks" / "pool.yaml").read_text())
    targets = config["tasks"]["out_of_domain"]
    assert sorted(targets) == sorted(table["interval_above_zero"]) and not table["missing"]
    assert config["tasks"]["meta_training"] == [t for t in pool["meta_training"] if t not in targets][:20]
    chosen_on = yaml.safe_load((RESULTS / "headroom" / "headroom.yaml").read_text())["partition"]
    assert config["partition"] == chosen_on  # the items the table read are validation items here too
    recon = yaml.safe_load((ROOT / "configs" / "targets-with-headroom-recon.yaml").read_text())
    assert (recon["tasks"], recon["partition"]) == (config["tasks"], config["partition"])  # the same verdict's items
