"""Every number the command line takes has a finite range (a negative --stop-timeout
was taken and meant an immediate SIGKILL; a negative --timeout was taken too)."""

from __future__ import annotations

import click
import pytest

from bus.cli import main

NUMBERS = [
    (name, param) for name, command in main.commands.items() for param in command.params
    if isinstance(param.type, (click.types.FloatParamType, click.types.IntParamType))
]


def test_the_walk_finds_the_numeric_options() -> None:
    assert {name for name, _ in NUMBERS} >= {"up", "run", "tail", "status", "down", "start", "attach", "web"}


@pytest.mark.parametrize("name, param", NUMBERS, ids=[f"{n}:{p.name}" for n, p in NUMBERS])
def test_every_numeric_option_is_bounded_both_ways(name: str, param: click.Parameter) -> None:
    kind = param.type
    assert isinstance(kind, (click.FloatRange, click.IntRange)), f"bus {name} {param.opts[0]} takes any number"
    assert kind.min is not None and kind.max is not None, f"bus {name} {param.opts[0]} is open-ended"
    for bad in ("nan", "inf", "-1", str(kind.max * 10 + 1)):
        with pytest.raises(click.BadParameter):
            kind.convert(bad, param, None)
