"""Command-line options, declared once in each command's signature and parsed by the standard library's argparse.

A command is a plain function whose parameters default to Option(...) or Argument(...). `parser(command)` builds its
ArgumentParser from them (the value type from the annotation: Optional[X] is X, List[X] one or more X, bool a flag),
and `run(command)` parses sys.argv with it and calls the command. `--help` lists every option with its help and
default; a usage error (an unknown option, a missing value, `--n abc`) is one line, `vae-sample: error: ...`, and
exit code 2, as the commands' own errors are. The values are checked once, by the API the command calls.
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import typing
from pathlib import Path
from typing import Any, NoReturn

METAVARS = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH"}


class OptionSpec:
    """An option with its default, its names (`--out`, `-o`) and its help; `--flag` alone when the type is bool."""

    def __init__(self, default: Any, *names: str, help: str = ""):
        self.default, self.names, self.help = default, names, help


class ArgumentSpec:
    """A positional argument (a list type takes one or more)."""

    def __init__(self, default: Any = ..., *, metavar: str, help: str = ""):
        self.default, self.metavar, self.help = default, metavar, help


# Typed as Any: `n: int = Option(64, "--n")` declares an int parameter to a type checker.
def Option(default: Any, *names: str, help: str = "") -> Any:
    return OptionSpec(default, *names, help=help)


def Argument(default: Any = ..., *, metavar: str, help: str = "") -> Any:
    return ArgumentSpec(default, metavar=metavar, help=help)


class Parser(argparse.ArgumentParser):
    """argparse's parser, with a usage error in one line."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.stderr.flush()
        raise SystemExit(2)


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


def parser(command) -> Parser:
    """The parser of command, named vae-COMMAND; its docstring is the help page's description."""
    p = Parser(prog=f"vae-{command.__name__}", description=inspect.getdoc(command), allow_abbrev=False)
    for name, spec, tp, is_list in _params(command):
        text = spec.help.replace("%", "%%")  # argparse fills %(default)s and the like in help texts
        if isinstance(spec, ArgumentSpec):
            nargs = "+" if is_list else None if spec.default is ... else "?"
            p.add_argument(name, metavar=spec.metavar, type=tp, nargs=nargs, help=text,
                           **({} if spec.default is ... else {"default": spec.default}))
        elif tp is bool:
            p.add_argument(*spec.names, dest=name, action="store_true", help=text)
        else:
            shown = "" if spec.default is None else f" [default: {spec.default}]".replace("%", "%%")
            p.add_argument(*spec.names, dest=name, type=tp, default=spec.default, metavar=METAVARS[tp],
                           help=text + shown)
    return p


def run(command) -> None:
    """Run command on sys.argv's arguments; options and positional arguments may come in any order."""
    kwargs = vars(parser(command).parse_intermixed_args())
    try:
        command(**kwargs)
        sys.stdout.flush()
    except KeyboardInterrupt:
        print("\nAborted!", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:  # the reader went away (vae-info --json | head -1): exit quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
