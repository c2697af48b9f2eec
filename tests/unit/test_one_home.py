"""Each rule has one home: the energy of a quarter-hour in core/units.py, gate closure, instants
and the Berlin day in core/qh.py. The production code (comments and docstrings aside, SQL in
strings included) must not spell them again; the applied migrations in sql/ are history and
are not rewritten."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "intraday"

RULES = [  # (what, pattern, its home)
    ("kW x 0.25 / 1000 (energy of a QH)", r"0\.25\s*/\s*1000|0\.00025|\*\s*0\.25\b|/\s*4000\b", "core/units.py"),
    ("gate closure = QH start - 15 min", r"\bGATE_CLOSURE_S\b", "core/qh.py"),
    ("epoch seconds -> UTC datetime", r"\bfromtimestamp\(", "core/qh.py"),
    ("the Berlin zone", r"\bZoneInfo\(", "core/qh.py"),
    ("the Berlin day's bounds", r"delivery_day_qhs\([^)]*\)\s*\[", "core/qh.py"),
]


def code_text(path: Path) -> list[tuple[int, str]]:
    """``(line, text)``: the tokens of each line that are code or a string but not a docstring or comment."""
    source = path.read_text()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.add((body[0].lineno, body[0].col_offset))
    lines: dict[int, list[str]] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and tok.start in docstrings):
            continue
        lines.setdefault(tok.start[0], []).append(tok.string)
    return [(line, " ".join(tokens)) for line, tokens in sorted(lines.items())]


def offences(pattern: str, home: str) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == home:
            continue
        for line, text in code_text(path):
            if re.search(pattern, text):
                found.append(f"intraday/{rel}:{line}: {text.strip()[:80]}")
    return found


@pytest.mark.parametrize(("what", "pattern", "home"), RULES, ids=[r[0] for r in RULES])
def test_the_rule_is_spelled_in_its_home_only(what, pattern, home):
    assert not offences(pattern, home), f"{what} belongs in intraday/{home}: use its helper"


def test_the_check_sees_code_and_sql_but_not_prose(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""Prose: best_kw x 0.25 / 1000."""\n# kw * 0.25 / 1000\n'
                      'SQL = "SELECT best_kw * 0.25 / 1000 FROM asset_qh"\nx = kw * 0.25 / 1000\n')
    lines = [line for line, text in code_text(sample) if re.search(RULES[0][1], text)]
    assert lines == [3, 4]
