"""The `degaml` command line: the command table. Each command is a typed function in the module that owns
its work (jsonargparse builds the parser, the `--config file.yaml` option and `--help` from the signature and
docstring)."""

from __future__ import annotations

import errno
import os
import re
import sys

from . import __version__

COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (module, attribute, the command's one-sentence summary; tests/test_cli.py checks it is the
    # docstring's first sentence). Modules are imported only when their command is chosen: `degaml --help`
    # loads no torch.
    "evaluate": ("degaml.adaptation.commands", "evaluate",
                 "Score a model (optionally with a PEFT LoRA adapter) on tasks and print a table of accuracies."),
    "collect": ("degaml.generator.commands", "collect",
                "Fine-tune a LoRA per task on its train partition and save the LoRA after every trajectory step."),
    "export-lm-eval": ("degaml.evaluation.lm_eval_export", "export_lm_eval",
                       "Write a degaml partition as lm-evaluation-harness tasks (YAML plus JSONL, for "
                       "`--include_path`)."),
    "train-generator": ("degaml.generator.commands", "train_generator",
                        "Train the prompt-to-LoRA generator on collected trajectories, leaving the `holdout` tasks "
                        "out."),
    "generate": ("degaml.generator.commands", "generate",
                 "Generate a PEFT LoRA adapter for a task from its unlabelled prompts, in one forward pass."),
    "adapt": ("degaml.adaptation.commands", "adapt",
              "Generate a task's adapter from its unlabelled prompts and refine it with one adaptation family."),
    "train-policy": ("degaml.adaptation.commands", "train_policy",
                     "Train the adaptation policy on the validation rewards of reward tasks."),
    "run": ("degaml.pipeline.commands", "run", "Run the whole experiment of a config and write its report."),
    "report": ("degaml.pipeline.commands", "report",
               "Rebuild the report of a `degaml run` directory from its artifacts (nothing is recomputed)."),
    "headroom": ("degaml.pipeline.headroom", "headroom",
                 "Measure each task's headroom: its own fine-tuned LoRA minus union LoRA, on validation items."),
    "publish": ("degaml.pipeline.publish", "publish",
                "Copy what `degaml report` reads of a run into a folder to commit, such as results/<name>."),
    "baseline": ("degaml.baselines.commands", "baseline_commands",
                 "Train one baseline (`degaml baseline <name> --help`: no-meta, union, union-finetune, maml, abmll, "
                 "mean-finetune, lorahub)."),
    "list-tasks": ("degaml.data.tasks", "list_tasks",
                   "List the registered tasks: domain (in / out / extra), preferred metric, and what each stands "
                   "for."),
    "prepare-data": ("degaml.data.commands", "prepare_data",
                     "Extract BIG-bench's multiple-choice JSON tasks into the data cache as optional meta-training "
                     "tasks."),
    "demo": ("degaml.demo", "demo",
             "Serve a web page where you paste a task's prompts and compare base and adapted answers side by side."),
    "push": ("degaml.generator.commands", "push",
             "Upload a trained generator to the Hugging Face Hub, creating the repository if needed."),
    "list-models": ("degaml.models.registry", "list_models",
                    "List the offline default models (usable without a hub); any hub id or local directory also "
                    "works."),
    "prepare-model": ("degaml.models.registry", "prepare_model",
                      "Convert an offline default model once into the cache (done automatically on first use)."),
}


def load_command(name: str):
    """The typed function (or, for `baseline`, the table of typed functions) behind command `name`."""
    import importlib

    module, attribute, _ = COMMANDS[name]
    found = getattr(importlib.import_module(module), attribute)
    return found() if name == "baseline" else found


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"degaml {__version__}: DeGAML-LLM (generator + adaptation module, baselines, experiment).", "",
             "usage: degaml <command> [--config file.yaml] [--<setting> value ...]; degaml <command> --help", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, _, summary) in COMMANDS.items()]
    return "\n".join(lines)


def parse_error_line(message: str, args: list[str]) -> str:
    """jsonargparse's multi-line parse error (usage, Union subtypes, given values) as one line: the setting at
    fault by its full dotted name, the value given and what was expected, and where it came from (the command
    line, or the config files)."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    key = ".".join(dict.fromkeys(keys))
    given = re.findall(r"Given value: (.*)", message)  # the innermost setting's value is reported first
    expected = [t for t in dict.fromkeys(re.findall(r"Expected a <class '([^']+)'>", message)) if t != "NoneType"]
    if expected and given:
        cause = f"{given[0].strip()!r} is not a valid {' or '.join(expected)}"
    else:
        lines = [line.strip().lstrip("- ").strip() for line in message.splitlines() if line.strip()]
        boilerplate = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value",
                       "Expected a <class 'NoneType'>", "Problem with given class_path", "Parser key")
        cause = "; ".join(dict.fromkeys([line for line in lines if not line.startswith(boilerplate)] or lines[:1]))
    flags = [a.split("=", 1)[0] for a in args if a.startswith("--")]
    configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    if any(f == f"--{key}" or f"--{key}".startswith(f + ".") or re.search(rf"\b{re.escape(f[2:])}\b", cause)
           for f in flags if len(f) > 2 and f != "--config"):
        where = " (given on the command line)"
    else:
        where = f" (in {', '.join(configs)})" if configs else ""
    return (f"{key}: " if key else "") + cause + where


def packaged_config(value: str) -> str:
    """`--config offline` names a run config shipped in the package (degaml/configs/offline.yaml), `--config
    pool-best` an overlay given after one (degaml/configs/overlays/); a path is kept."""
    from pathlib import Path

    if Path(value).exists() or "/" in value or value.endswith((".yaml", ".yml", ".json")):
        return value
    configs = Path(__file__).parent / "configs"
    for folder in (configs, configs / "overlays"):
        if (folder / f"{value}.yaml").is_file():
            return str(folder / f"{value}.yaml")
    names = sorted(p.stem for p in configs.glob("*.yaml"))
    overlays = sorted(p.stem for p in (configs / "overlays").glob("*.yaml"))
    raise ValueError(f"--config {value!r} is neither a file nor a shipped config ({', '.join(names)}) or overlay "
                     f"({', '.join(overlays)})")


def main(argv: list[str] | None = None) -> None:
    from jsonargparse import ArgumentError, auto_cli, set_parsing_settings

    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # settings' field docstrings in --help

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        raise SystemExit(0 if args else 2)
    if args[0] == "--version":
        print(f"degaml {__version__}")
        raise SystemExit(0)
    if args[0] not in COMMANDS:
        print(f"degaml: error: unknown command {args[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        raise SystemExit(2)
    try:
        args = [packaged_config(a) if i and args[i - 1] == "--config" else a for i, a in enumerate(args)]
    except ValueError as e:
        print(f"degaml: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if len(args) >= 2 and args[0] == "report" and not args[1].startswith("-"):
        args.insert(1, "--run_dir")  # `degaml report runs/x`: the one positional argument of the CLI
    try:
        auto_cli({args[0]: load_command(args[0])}, args=args, as_positional=False, exit_on_error=False,
                 version=__version__)
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
    except BrokenPipeError:  # `degaml list-tasks | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
            raise  # a bug or a broken machine: the traceback is the useful part
        print(f"degaml: error: cannot write {e.filename or 'the output'}: {e.strerror} "
              "(choose another --out, or free or unlock the disk)", file=sys.stderr)
        raise SystemExit(2) from None


__all__ = ["COMMANDS", "main"]


if __name__ == "__main__":
    main()
