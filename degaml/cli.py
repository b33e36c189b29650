"""The `degaml` command line: the command table. Each command is a typed function in the module that owns
its work (jsonargparse builds the parser, the `--config file.yaml` option and `--help` from the signature and
docstring)."""

from __future__ import annotations

import errno
import re
import sys

from . import __version__
from .adaptation.commands import adapt, train_policy
from .api import evaluate_command
from .baselines import METHODS
from .baselines.commands import baseline_command
from .data.commands import prepare_data
from .data.tasks import list_tasks
from .generator.commands import collect, generate, train_generator
from .models.registry import list_models, prepare_model
from .pipeline.commands import report, run

COMMANDS = {
    "evaluate": evaluate_command,
    "collect": collect,
    "train-generator": train_generator,
    "generate": generate,
    "adapt": adapt,
    "train-policy": train_policy,
    "run": run,
    "report": report,
    "baseline": {name: baseline_command(spec) for name, spec in METHODS.items()},
    "list-tasks": list_tasks,
    "prepare-data": prepare_data,
    "list-models": list_models,
    "prepare-model": prepare_model,
}


def parse_error_line(message: str, args: list[str]) -> str:
    """jsonargparse's multi-line parse error (usage, Union subtypes, given values) as one line: the setting at
    fault, what is wrong with it, and the config file it came from."""
    lines = [line.strip().lstrip("- ").strip() for line in message.splitlines() if line.strip()]
    boilerplate = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value",
                   "Expected a <class 'NoneType'>", "Problem with given class_path", "Parser key")
    causes = [line for line in lines if not line.startswith(boilerplate)] or lines[:1]
    key = re.search(r'Parser key "([^"]+)"', message)
    configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    where = f" (in {', '.join(configs)})" if configs else ""
    return (f"{key.group(1)}: " if key else "") + "; ".join(dict.fromkeys(causes)) + where


def main(argv: list[str] | None = None) -> None:
    from jsonargparse import ArgumentError, auto_cli

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) >= 2 and args[0] == "report" and not args[1].startswith("-"):
        args.insert(1, "--run_dir")  # `degaml report runs/x`: the one positional argument of the CLI
    try:
        auto_cli(COMMANDS, args=args, as_positional=False, exit_on_error=False, version=__version__)
    except ArgumentError as e:
        print(f"degaml: error: {parse_error_line(str(e), args)} (`degaml {args[0] if args else ''} --help` lists "
              "the settings)", file=sys.stderr)
        raise SystemExit(2) from None
    except (ValueError, FileNotFoundError, ModuleNotFoundError, FloatingPointError) as e:
        # Bad input: one clear line, no traceback, non-zero exit (a setting refused while the parser builds
        # the config objects arrives wrapped in the parser's multi-line report).
        message = parse_error_line(str(e), args) if "\n" in str(e) else str(e)
        print(f"degaml: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
            raise  # a bug or a broken machine: the traceback is the useful part
        print(f"degaml: error: cannot write {e.filename or 'the output'}: {e.strerror} "
              "(choose another --out, or free or unlock the disk)", file=sys.stderr)
        raise SystemExit(2) from None


__all__ = ["COMMANDS", "main"]


if __name__ == "__main__":
    main()
