"""The `degaml` command line: the command table. Each command is a typed function in the module that owns
its work (jsonargparse builds the parser, the `--config file.yaml` option and `--help` from the signature and
docstring)."""

from __future__ import annotations

import errno
import sys

from .adaptation.commands import adapt, train_policy
from .api import evaluate_command
from .baselines import METHODS
from .baselines.commands import baseline_command
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
    "list-models": list_models,
    "prepare-model": prepare_model,
}


def main(argv: list[str] | None = None) -> None:
    from jsonargparse import auto_cli

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) >= 2 and args[0] == "report" and not args[1].startswith("-"):
        args.insert(1, "--run_dir")  # `degaml report runs/x`: the one positional argument of the CLI
    try:
        auto_cli(COMMANDS, args=args, as_positional=False)
    except (ValueError, FileNotFoundError, ModuleNotFoundError, FloatingPointError) as e:
        # Bad input: one clear line, no traceback, non-zero exit.
        print(f"degaml: error: {e}", file=sys.stderr)
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
