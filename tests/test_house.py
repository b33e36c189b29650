"""House rules a test can hold: functions short enough to read as steps."""

import ast
from pathlib import Path

import degaml

PACKAGE = Path(degaml.__file__).parent
LONGEST = 80
"""Lines of the longest function (docstring included): past it, a function should be split into named steps."""


def long_functions(source: str, where: str) -> list[str]:
    return [f"{where}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > LONGEST]


def test_the_check_finds_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(LONGEST))
    assert long_functions(f"def f():\n{body}\n", "m.py") == [f"m.py:1 f ({LONGEST + 1} lines)"]
    assert long_functions("def g():\n    return 1\n", "m.py") == []


def test_no_function_in_the_package_is_over_the_limit():
    found = [line for path in sorted(PACKAGE.rglob("*.py"))
             for line in long_functions(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))]
    assert found == []
