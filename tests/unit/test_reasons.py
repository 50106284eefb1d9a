"""Every reject reason and control error code the code can produce is declared.

A reason that is not declared makes ProtocolError (or encode_error) raise
ValueError: inside the supervisor's loop that was a crash (issue: a hello under
a supervised name stopped the supervisor). This walks every call site in the
packages instead of trusting that each one is reached by some test."""

from __future__ import annotations

import ast
from pathlib import Path

from bus.protocol.errors import CONTROL_ERRORS, ENGINE_REJECTS, OTHER_REASONS

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bus", "engine", "supervisor")
ERRORS = {"ProtocolError", "RemoteProtocolError", "LocalProtocolError"}
DECLARED = set(ENGINE_REJECTS) | set(OTHER_REASONS)
WRAPPERS = {"_reject", "_count_reject"}  # functions that take a reason and pass it on


def _name(func: ast.expr) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _sites() -> list[tuple[str, str, ast.expr]]:
    """(where, what, the expression giving the reason or code) of every call that names one."""
    found = []
    for path in sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        wrappers = {id(call) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name in WRAPPERS for call in ast.walk(f)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or id(node) in wrappers:  # a wrapper's own body: its call sites are checked
                continue
            name, where = _name(node.func), f"{path.relative_to(ROOT)}:{node.lineno}"
            if name in ERRORS:
                found += [(where, "reason", kw.value) for kw in node.keywords if kw.arg == "reason"]
            elif name == "_reject" and len(node.args) >= 2:  # codec's shorthand: _reject(message, reason)
                found.append((where, "reason", node.args[1]))
            elif name == "_count_reject" and node.args:  # the supervisor counting a reject: _count_reject(reason, frame)
                found.append((where, "reason", node.args[0]))
            elif name == "encode_error" and len(node.args) >= 2:
                found.append((where, "code", node.args[1]))
    return found


def test_every_reason_and_code_given_anywhere_is_declared() -> None:
    sites = _sites()
    assert len(sites) > 40, "the walk found too few call sites: did the names change?"
    for where, what, value in sites:
        if isinstance(value, ast.Constant):
            allowed = (set(CONTROL_ERRORS) | set(ENGINE_REJECTS)) if what == "code" else DECLARED
            assert value.value in allowed, f"{where}: {what} {value.value!r} is not declared in bus/protocol/errors.py"
        else:  # only a reason passed along from an error that already carries one
            assert isinstance(value, ast.Attribute) and value.attr == "reason", f"{where}: a {what} that is not a literal: {ast.unparse(value)}"


def test_every_declared_reason_is_used() -> None:
    """The tables in PROTOCOL.md come from these lists: none may be stale."""
    given = {value.value for _, _, value in _sites() if isinstance(value, ast.Constant)}
    assert set(ENGINE_REJECTS) - {"bad-field"} <= given  # bad-field is ProtocolError's default reason
    assert set(CONTROL_ERRORS) <= given
