"""Command-line options, declared once and parsed two ways: by the standard library, or by typer.

A command is a plain function whose parameters default to Option(...) or Argument(...). `run(command)`
parses sys.argv with the standard library and calls it: enough for a plain run such as
`vae-sample --n 64 --out s.png`. Anything else (`--help`, an unknown option, a missing value, a number
written in an unusual way) goes to `typer_app(command)`, the typer app built from the same declarations,
so help pages and usage errors are typer's. Importing typer (its click, and the
pydantic it coerces values with) costs more than the rest of a plain run: about 55 ms and 15 MiB.

The plain parser accepts a subset of what typer accepts and reads it to the same values: long and short
option names, `--name=value`, a flag without a value, the last of a repeated option winning, positional
arguments anywhere; integers like -12 and floats like 0.7 or 1e-3 (typer would also take `007`, ` 7`
or `4.0`: those go to typer).
"""
from __future__ import annotations

import inspect
import os
import re
import sys
import typing
from pathlib import Path
from typing import Any

INT = re.compile(r"-?(0|[1-9][0-9]*)")
FLOAT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


class OptionSpec:
    """An option with its default, its names (`--out`, `-o`) and its help; `--flag` alone when the type is bool."""

    def __init__(self, default: Any, *names: str, help: str = ""):
        self.default, self.names, self.help = default, names, help


class ArgumentSpec:
    """A positional argument (a list type takes one or more)."""

    def __init__(self, default: Any = ..., *, metavar: str, help: str = ""):
        self.default, self.metavar, self.help = default, metavar, help


# Typed as Any, as typer's own: `n: int = Option(64, "--n")` declares an int parameter to a type checker.
def Option(default: Any, *names: str, help: str = "") -> Any:
    return OptionSpec(default, *names, help=help)


def Argument(default: Any = ..., *, metavar: str, help: str = "") -> Any:
    return ArgumentSpec(default, metavar=metavar, help=help)


class NotPlain(Exception):
    """The command line needs typer: help, a usage error, or a spelling the plain parser does not read."""


def _params(command) -> list[tuple[str, OptionSpec | ArgumentSpec, type, bool]]:
    """(name, declaration, value type, is a list) for each parameter; Optional[X] gives X."""
    hints = typing.get_type_hints(command)
    out = []
    for p in inspect.signature(command).parameters.values():
        tp = hints[p.name]
        is_list = typing.get_origin(tp) is list
        if typing.get_origin(tp) is not None:  # List[X] or Optional[X]
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        out.append((p.name, p.default, tp, is_list))
    return out


def _value(text: str, tp: type):
    if tp is str:
        return text
    if tp is Path and text:
        return Path(text)
    if (tp is int and INT.fullmatch(text)) or (tp is float and FLOAT.fullmatch(text)):
        return tp(text)
    raise NotPlain(text)


def parse(command, argv: list[str]) -> dict:
    """The keyword arguments for command from argv; NotPlain where only typer should answer."""
    params = _params(command)
    if "--help" in argv:
        raise NotPlain("--help")
    by_name = {name: (p, spec, tp) for p, spec, tp, _ in params if isinstance(spec, OptionSpec)
               for name in spec.names}
    kwargs = {p: spec.default for p, spec, _, _ in params}
    positional = []
    args = iter(argv)
    for token in args:
        if token == "-" or not token.startswith("-"):  # - alone: standard input
            positional.append(token)
            continue
        name, eq, text = token.partition("=") if token.startswith("--") else (token, "", "")
        if name not in by_name:
            raise NotPlain(token)
        p, _, tp = by_name[name]
        if tp is bool:
            if eq:
                raise NotPlain(token)
            kwargs[p] = True
            continue
        if not eq:
            value = next(args, None)
            if value is None:
                raise NotPlain(token)
            text = value
        kwargs[p] = _value(text, tp)
    for p, spec, tp, is_list in params:
        if not isinstance(spec, ArgumentSpec):
            continue
        take = positional if is_list else positional[:1]
        if not take and spec.default is ...:
            raise NotPlain(spec.metavar)
        if take:
            kwargs[p] = [_value(t, tp) for t in take] if is_list else _value(take[0], tp)
        positional = positional[len(take):]
    if positional:
        raise NotPlain(positional[0])
    return kwargs


def typer_app(command):
    """The typer app of command: its help page and usage errors, and what tests drive with typer's CliRunner."""
    import functools

    import typer

    hints = typing.get_type_hints(command)
    sig = inspect.signature(command)
    params = []
    for p in sig.parameters.values():
        spec = p.default
        if isinstance(spec, ArgumentSpec):
            default = typer.Argument(spec.default, metavar=spec.metavar, help=spec.help)
        else:
            default = typer.Option(spec.default, *spec.names, help=spec.help)
        params.append(p.replace(default=default, annotation=hints[p.name]))

    @functools.wraps(command)
    def typed(**kwargs):
        return command(**kwargs)

    typed.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]  # what typer reads
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    app.command()(typed)
    return app


def run(command) -> None:
    """Run command on sys.argv: parsed here when plain, else by typer."""
    try:
        kwargs = parse(command, sys.argv[1:])
    except NotPlain:
        typer_app(command)()
        return
    try:
        command(**kwargs)
        sys.stdout.flush()
    except KeyboardInterrupt:  # as click reports it
        print("\nAborted!", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:  # the reader went away (vae-info --json | head -1): exit quietly, as click does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
