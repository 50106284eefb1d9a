"""The documents stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from bus.protocol import KINDS
from bus.protocol.control import OPS
from bus.protocol.errors import CONTROL_ERRORS, ENGINE_REJECTS
from bus.protocol.doc import DOC, current_block, generate

ROOT = Path(__file__).resolve().parents[2]


def test_protocol_md_has_the_generated_tables_of_every_kind() -> None:
    text = DOC.read_text()
    assert current_block(text) == generate(), "run `python -m bus.protocol.doc --write`"
    for kind in KINDS:
        assert f"### `{kind}`" in text


def test_protocol_md_documents_every_control_request_and_reject_reason() -> None:
    text = DOC.read_text()
    for op in OPS:
        assert f"| `{op}` |" in text
    engine_section = text[text.index("## 3."): text.index("## 4.")]
    for reason in ENGINE_REJECTS:
        assert f"`{reason}`" in engine_section, f"reject reason {reason} is not in PROTOCOL.md section 3"
    control_section = text[text.index("## 7."): text.index("## 8.")]
    for code in CONTROL_ERRORS:
        assert f"`{code}`" in control_section, f"control error code {code} is not in PROTOCOL.md section 7"


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash)\n(.*?)```", readme, re.S)
    commands = [line for block in blocks[:1] for line in block.strip().splitlines()]
    assert len(commands) == 2, "the README starts with two commands: demo, tests"
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci
    assert "bus up examples/demo.toml" in commands[0]
