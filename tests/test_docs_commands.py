"""Every `degaml ...` command shown in the README and docs exists, with every flag it shows (nested
`--group.field` flags included), checked against the CLI's command table and the commands' typed
signatures; nothing runs. The docs cannot drift from the CLI."""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# docs/history.md keeps superseded measurements with their commands as they were run then.
DOCS = [ROOT / "README.md", ROOT / "benchmarks" / "README.md",
        *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "history.md")]


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) for each `degaml ...` in a code block line or an inline code span."""
    found = []
    for path in DOCS:
        text = path.read_text()
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
        spans = re.findall(r"`(degaml [^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for command in [*lines, *spans]:
            command = command.split("#")[0].strip()
            if command.startswith("degaml ") and "<" not in command:
                found.append((path.name, command))
    return found


def command_function(words: list[str]):
    from degaml.cli import COMMANDS, load_command

    entry = load_command(words[0]) if words and words[0] in COMMANDS else None
    if isinstance(entry, dict) and len(words) > 1 and not words[1].startswith("-"):
        return entry.get(words[1])
    return entry


def dataclass_fields(func, name: str) -> set[str] | None:
    """Field names of parameter `name`'s dataclass type (X or X | None), or None when it is not one."""
    import dataclasses
    import typing

    hint = typing.get_type_hints(func).get(name)
    for candidate in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(candidate):
            return {f.name for f in dataclasses.fields(candidate)}
    return None


def check(command: str) -> None:
    """Raise AssertionError naming the unknown sub-command or flag."""
    import inspect

    words = [w for w in shlex.split(command)[1:] if w != "..."]
    func = command_function(words)
    assert func is not None, f"no sub-command {' '.join(words[:2])!r}"
    if isinstance(func, dict):  # a group named alone (`degaml baseline`)
        assert not any(w.startswith("--") for w in words), f"{words[0]} needs a sub-command before its flags"
        return
    params = inspect.signature(func).parameters
    for flag in (w for w in words if w.startswith("--")):
        name, _, field = flag[2:].partition(".")
        if name in ("config", "help", "print_config"):
            continue
        assert name in params, f"{words[0]} has no flag --{name}"
        if field:
            fields = dataclass_fields(func, name)
            assert fields is not None and field.split(".")[0] in fields, f"{words[0]} has no flag {flag}"


COMMANDS_IN_DOCS = documented_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS_IN_DOCS) > 20


@pytest.mark.parametrize("where, command", COMMANDS_IN_DOCS, ids=[f"{w}:{c[:60]}" for w, c in COMMANDS_IN_DOCS])
def test_documented_command_exists_with_its_flags(where, command):
    check(command)


@pytest.mark.parametrize("command", ["degaml evaluate --no_such_flag 1", "degaml baseline maml --maml.no_field 2",
                                     "degaml nonsense --x 1", "degaml run --evaluation.nope 3"])
def test_a_wrong_command_or_flag_is_caught(command):
    with pytest.raises(AssertionError):
        check(command)
