"""The code stays readable: short functions, the formatter never opted out."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    p for folder in ("samplegan_tune", "benchmarks", "tests") for p in (ROOT / folder).rglob("*.py")
)
MAX_LINES = 60  # issue 18: no function longer than a screen
OPT_OUT = re.compile(r"#\s*fmt:\s*(skip|off)\b")


def test_no_function_is_longer_than_a_screen() -> None:
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)"
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (length := node.end_lineno - node.lineno + 1) > MAX_LINES
    ]
    assert not long, "split these:\n" + "\n".join(long)


def test_the_formatter_is_never_opted_out() -> None:
    opted = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in SOURCES
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if OPT_OUT.search(line)
    ]
    assert not opted, "formatter opt-outs:\n" + "\n".join(opted)
