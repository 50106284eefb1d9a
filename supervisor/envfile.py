"""`.env` files, read as foreman and honcho read them: variables for the engines' environment.

    # a comment; blank lines are skipped
    DATABASE_URL=postgres://localhost/dev
    export GREETING="hello world"    # `export ` is allowed (the file may be sourced too), and so is a comment
    PATTERN='kept $as is'            # single quotes: every character as written
    MOTD="two\\nlines"                # double quotes: \\n is a newline, \\t a tab, \\X is X (\\" \\\\ \\$)

An unquoted value runs to the end of the line or to a ` #` comment, without the
whitespace around it. Nothing is expanded (as in foreman): `$HOME` in a value
stays as written, and the shell that runs a Procfile's command expands what the
command refers to. A line that is none of these is refused, naming the file and
the line.
"""

from __future__ import annotations

import re
from pathlib import Path

from bus.errors import BusError

_ASSIGNMENT = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_ESCAPES = {"n": "\n", "t": "\t"}


class EnvFileError(BusError):
    pass


def read_env_file(path: Path, *, missing_ok: bool = False) -> dict[str, str]:
    """The variables of an env file ({} for a missing one when `missing_ok`); EnvFileError says what is wrong."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a BOM (Windows editors) is not part of the first name
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise EnvFileError(f"{path}: no such env file: create it (KEY=VALUE lines), or name another with --env-file") from None
    except IsADirectoryError:
        raise EnvFileError(f"{path}: is a directory, not an env file (KEY=VALUE lines)") from None
    except OSError as exc:
        raise EnvFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EnvFileError(f"{path}: not UTF-8 text") from None
    return parse_env(text, str(path))


def parse_env(text: str, where: str) -> dict[str, str]:
    """KEY=VALUE lines (`where` names them in errors: `FILE:LINE: ...`); a later line wins."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        at = f"{where}:{number}:"
        match = _ASSIGNMENT.fullmatch(line)
        if match is None:
            raise EnvFileError(
                f"{at} {_shown(line)} is not a KEY=VALUE line: write it as NAME=value (a name of letters, digits and '_', "
                "not starting with a digit), or begin it with # to comment it out"
            )
        key, value = match.groups()
        values[key] = _value(value, f"{at} {key}")
        if "\0" in values[key]:
            raise EnvFileError(f"{at} {key} holds a NUL character, which no environment can carry")
    return values


def _value(text: str, at: str) -> str:
    if not text or text[0] not in "'\"":
        return re.split(r"\s#", text, maxsplit=1)[0].rstrip()
    quote, out, k = text[0], [], 1
    while k < len(text) and text[k] != quote:
        if quote == '"' and text[k] == "\\" and k + 1 < len(text):
            k += 1
            out.append(_ESCAPES.get(text[k], text[k]))
        else:
            out.append(text[k])
        k += 1
    if k == len(text):
        raise EnvFileError(f"{at}: the value's opening {quote} is never closed: close it on the same line (in double quotes, \\n is a newline)")
    rest = text[k + 1:].lstrip()
    if rest and not rest.startswith("#"):
        raise EnvFileError(f"{at}: {_shown(rest)} follows the closing {quote}: quote the whole value, or begin a comment with #")
    return "".join(out)


def _shown(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
