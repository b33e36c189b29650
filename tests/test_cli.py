import pytest

from degaml.cli import main
from degaml.io import atomic_write_text


def test_help_lists_subcommands(capsys):
    from degaml.cli import COMMANDS

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command, (_, _, summary) in COMMANDS.items():
        assert f"  {command} " in out and summary in out


def test_each_summary_is_its_commands_first_sentence():
    import inspect

    from degaml.cli import COMMANDS, load_command
    from degaml.config import first_sentence

    for name, (_, _, summary) in COMMANDS.items():
        if name != "baseline":
            assert summary == first_sentence(inspect.getdoc(load_command(name))), name
            assert inspect.getdoc(load_command(name)).splitlines()[0] == summary, f"{name}: help shows the first line"
    for name, command in load_command("baseline").items():
        assert command.__doc__.splitlines()[0].endswith("."), name
        assert name in COMMANDS["baseline"][2]


def test_top_level_help_and_version_import_no_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom degaml.cli import main\n"
            "for argv in (['--help'], ['--version']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "degaml 0.1.0" in done.stdout


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


def test_nested_help_describes_each_setting(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--evaluation.help", "EvaluationSettings"])
    out = capsys.readouterr().out
    assert "Items per target" in out and "--evaluation.limit" in out and "stays sealed" in out


def test_a_shipped_config_is_named_without_its_path(capsys, monkeypatch, tmp_path):
    from degaml.cli import packaged_config

    monkeypatch.chdir(tmp_path)  # no configs/ directory here, as for an installed wheel
    assert packaged_config("offline").endswith("degaml/configs/offline.yaml")
    assert packaged_config("mine.yaml") == "mine.yaml"
    with pytest.raises(SystemExit):
        main(["run", "--config", "nonesuch"])
    assert "neither a file nor a shipped config (adaptation-headroom, generator-loo, generator-pool, headroom" in capsys.readouterr().err


def test_a_closed_pipe_ends_a_listing_quietly(monkeypatch, capsys):
    """`degaml list-tasks | head`: once the reader has gone, the command stops with exit 0, no traceback."""
    import io
    import os

    read, write = os.pipe()
    os.close(read)  # the reader has gone: every write now fails with EPIPE
    stdout = io.TextIOWrapper(os.fdopen(write, "wb"), line_buffering=True)
    monkeypatch.setattr("sys.stdout", stdout)
    with pytest.raises(SystemExit) as exit_info:
        main(["list-models"])
    assert exit_info.value.code == 0


def test_no_command_loads_torch_to_print_its_help():
    """Every `--help` is built from torch-free settings modules (benchmarks/help_speed.py holds the seconds): a
    heavy import in a command's module or its settings fails here, naming the command."""
    import subprocess
    import sys

    script = """
import contextlib, io, sys
from degaml.cli import COMMANDS, main
heavy = ("torch", "transformers", "peft")
for name in [*COMMANDS, "baseline union"]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main([*name.split(), "--help"])
    loaded = [m for m in heavy if m in sys.modules]
    if loaded:
        sys.exit(f"degaml {name} --help loaded {loaded}")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_run_command_takes_exactly_the_experiments_settings():
    """`degaml run`'s flags are Experiment's fields, unset ones taking its defaults: a setting added to one and
    not the other fails here."""
    import dataclasses
    import inspect

    from degaml.pipeline.commands import run
    from degaml.pipeline.experiment import Experiment

    parameters = inspect.signature(run).parameters
    assert list(parameters) == [f.name for f in dataclasses.fields(Experiment)]
    assert all(p.default is None for p in parameters.values())
