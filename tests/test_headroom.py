"""`degaml headroom`: per task, own LoRA minus union LoRA on validation items, resumable, in parts, published
and rebuilt from its per-item predictions alone."""

import hashlib
import json

import pytest

from degaml.cli import main
from degaml.pipeline.headroom import table_rows


def _args(workspace, out):
    return ["headroom", "--tasks", ",".join(workspace["tasks"]), "--out", str(out), "--model.name",
            workspace["model"], "--model.dtype", "float32", "--model.device", "cpu", "--lora.r", "2",
            "--lora.alpha", "4", "--items", "5", "--budget.own_steps", "2", "--budget.union_steps", "2",
            "--budget.meta_examples", "4", "--budget.batch_size", "2", "--progress", "false"]


def test_parts_fill_one_table_whose_headroom_is_own_minus_union_on_the_same_items(workspace, tmp_path, capsys):
    out = tmp_path / "h"
    main([*_args(workspace, out), "--part", "1/2"])
    rows, missing = table_rows(out)
    assert [r.task for r in rows] == ["colors"] and missing == ["numbers"]
    assert "Not yet scored (1): numbers" in (out / "headroom.md").read_text()
    main([*_args(workspace, out), "--part", "2/2"])
    rows, missing = table_rows(out)
    assert sorted(r.task for r in rows) == ["colors", "numbers"] and not missing
    for row in rows:  # by hand from the per-item predictions
        acc = {}
        for method in ("union", "own"):
            (result,) = json.loads((out / "tasks" / row.task / method / "results.json").read_text())["results"]
            acc[method] = 100 * sum(p["pred"] == p["gold"]
                                    for p in result["predictions"]) / len(result["predictions"])
            assert row.accuracy[method] == pytest.approx(acc[method])
        assert row.headroom.difference == pytest.approx(acc["own"] - acc["union"])
        assert row.items == 5
    assert (out / "union-adapter" / "adapter_model.safetensors").is_file()


def test_a_published_headroom_table_rebuilds_without_adapters(workspace, tmp_path, capsys):
    out, published = tmp_path / "h", tmp_path / "results" / "h"
    main(_args(workspace, out))
    main(["publish", "--run_dir", str(out), "--out", str(published)])
    assert not list(published.rglob("*.safetensors"))
    digest = hashlib.sha256((out / "union-adapter" / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert (published / "union-adapter.sha256").read_text().split()[0] == digest
    before = (published / "headroom.md").read_text()
    (published / "headroom.md").unlink()
    main(["report", str(published)])
    assert (published / "headroom.md").read_text() == before == (out / "headroom.md").read_text()


def test_other_settings_and_a_bad_part_are_refused_before_work(workspace, tmp_path, capsys):
    out = tmp_path / "h"
    with pytest.raises(SystemExit):
        main([*_args(workspace, out), "--part", "3/2"])
    assert "--part '3/2': K must be between 1 and N" in capsys.readouterr().err
    assert not out.exists()
    main([*_args(workspace, out), "--part", "1/2"])
    scored = sorted(out.rglob("results.json"))
    with pytest.raises(SystemExit):
        main([*_args(workspace, out)[:-2], "--items", "6", "--progress", "false"])
    assert "holds a headroom table made with other settings (items differ" in capsys.readouterr().err
    assert sorted(out.rglob("results.json")) == scored


def test_a_fresh_directory_takes_the_published_tasks_and_measures_only_the_rest(workspace, tmp_path, capsys):
    """`--published results/...`: a machine without the run directory measures only the tasks the published
    table lacks, and says whether the union LoRA it retrains is the one the published tasks were scored with."""
    first, published, fresh = tmp_path / "h", tmp_path / "results" / "h", tmp_path / "fresh"
    main([*_args(workspace, first), "--part", "1/2"])
    main(["publish", "--run_dir", str(first), "--out", str(published)])
    capsys.readouterr()
    main([*_args(workspace, fresh), "--published", str(published)])
    said = capsys.readouterr().out
    assert "took 1 scored task(s)" in said and "warning" not in said  # float32 on one CPU repeats the union LoRA
    for method in ("base", "union", "own"):  # colors was taken as published, not measured again
        taken = fresh / "tasks" / "colors" / method / "results.json"
        assert taken.read_text() == (published / "tasks" / "colors" / method / "results.json").read_text()
    assert not (fresh / "adapters" / "colors").exists() and (fresh / "adapters" / "numbers").is_dir()
    rows, missing = table_rows(fresh)
    assert sorted(r.task for r in rows) == ["colors", "numbers"] and not missing
    main(["publish", "--run_dir", str(fresh), "--out", str(published)])  # publishing taken files again is idempotent
    assert table_rows(published)[0] == rows

    (published / "union-adapter.sha256").write_text("0" * 64 + "  adapter_model.safetensors\n")
    main([*_args(workspace, fresh), "--published", str(published)])
    assert "is not the one" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*_args(workspace, tmp_path / "other")[:-2], "--items", "6", "--published", str(published)])
    assert "its headroom.yaml differs from these settings" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
