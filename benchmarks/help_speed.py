"""How long each command takes to print its --help, from a fresh process (what a user waits for).

`degaml --help` reads only the command table; a command's own --help builds its typed parser, which imports the
modules its settings live in. Prints the median of --repeats wall-clock seconds per command, measured side by
side in one run.

    python -m benchmarks.help_speed
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from benchmarks.agreement import machine_line


def seconds(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "degaml.cli", *argv], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--commands", default="", help="comma-separated (default: every command, and `baseline union`)")
    args = parser.parse_args()
    print(machine_line())
    print(f"\n| command | seconds to --help (median of {args.repeats}) |\n|---|---|")
    print(f"| `degaml --help` | {seconds(['--help'], args.repeats):.2f} |")
    from degaml.cli import COMMANDS

    for command in args.commands.split(",") if args.commands else [*COMMANDS, "baseline union"]:
        print(f"| `degaml {command} --help` | {seconds([*command.split(), '--help'], args.repeats):.2f} |")


if __name__ == "__main__":
    main()
