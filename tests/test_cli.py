import pytest

from degaml.cli import main
from degaml.io import atomic_write_text


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("evaluate", "list-tasks", "list-models", "prepare-model"):
        assert command in out


def test_unknown_model_lists_known_ones(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--model.name", "no-such-model", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown model 'no-such-model'" in err and "smollm2-135m-instruct" in err
    assert not (tmp_path / "out").exists()


def test_unknown_task_lists_known_ones():
    from degaml.data import load_task

    with pytest.raises(ValueError, match=r"unknown task 'nope'; `degaml list-tasks` lists the \d+ known tasks"):
        load_task("nope")


def test_list_tasks(capsys):
    main(["list-tasks"])
    out = capsys.readouterr().out
    assert "arc_challenge" in out and "stand-in" in out


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a" / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["f.txt"]


def test_yaml_config_with_cli_override(tmp_path, capsys):
    config = tmp_path / "eval.yaml"
    config.write_text("data: {tasks: [piqa, boolq], limit: 7}\nevaluation: {protocol: generative}\n")
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--config", str(config), "--data.limit", "3", "--print_config"])
    assert exit_.value.code == 0
    import yaml

    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["data"]["tasks"], printed["data"]["limit"], printed["evaluation"]["protocol"]) == (
        ["piqa", "boolq"], 3, "generative")


def test_bad_config_value_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--evaluation.protocol", "telepathy"])
    assert exit_.value.code != 0
    assert "telepathy" in capsys.readouterr().err


def test_collect_shards_are_disjoint_and_complete():
    from degaml.generator.commands import shard

    tasks = [f"t{i}" for i in range(7)]
    shards = [shard(tasks, i, 3) for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(tasks)
    assert not set(shards[0]) & set(shards[1])
