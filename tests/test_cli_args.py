"""runtime/args.py: the plain parser reads a command line to exactly the values typer reads, and leaves the rest to
typer."""
import functools

import pytest
from typer.testing import CliRunner

from vae_edge.runtime import cli
from vae_edge.runtime.args import NotPlain, parse, typer_app


def typer_reads(command, argv: list[str]) -> dict:
    """The keyword arguments typer's app for command would call it with."""
    seen = {}

    @functools.wraps(command)
    def record(**kwargs):
        seen.update(kwargs)

    r = CliRunner().invoke(typer_app(record), argv)
    assert r.exit_code == 0, r.output
    return seen


@pytest.mark.parametrize("command,argv", [
    (cli.sample, []),
    (cli.sample, ["--n", "12", "--out", "g.png", "--seed", "-3", "--temperature", "0.7", "--nrow", "4"]),
    (cli.sample, ["-n", "5", "-m", "models/x", "-o", "a.jpg", "--npy", "a.npy", "-t", "1e-3", "--precision", "int8",
                  "--threads", "0", "--batch-size", "7"]),
    (cli.sample, ["--n=5", "--model=m", "--temperature", "2", "--n", "6"]),  # the last --n wins
    (cli.sample, ["--out", "-", "--npy", "--x.npy"]),  # an option's value is the next word, whatever it looks like
    (cli.encode, ["a.png", "--sample", "b.png", "--out", "z.npy", "--seed", "9"]),
    (cli.encode, ["x.npy"]),
    (cli.decode, ["--model", "m", "z.npy", "--nrow", "3"]),
    (cli.encode, ["-", "-o", "-", "--glob", "*.png", "--strict", "-q", "--index", "i.csv"]),  # - alone: an input
    (cli.decode, ["-", "--out-dir", "d", "--force"]),
    (cli.info, ["--json"]),
    (cli.info, []),
])
def test_a_plain_command_line_reads_as_typer_reads_it(command, argv):
    assert parse(command, argv) == typer_reads(command, argv)


@pytest.mark.parametrize("command,argv", [
    (cli.sample, ["--help"]), (cli.sample, ["--n", "3", "--help"]), (cli.sample, ["-h"]),
    (cli.sample, ["--bogus"]), (cli.sample, ["extra"]), (cli.sample, ["--n"]), (cli.sample, ["--", "--n"]),
    (cli.sample, ["-n5"]), (cli.sample, ["--n", "007"]), (cli.sample, ["--n", "4.0"]), (cli.sample, ["--n", "x"]),
    (cli.sample, ["--temperature", "nan"]), (cli.sample, ["--out", ""]), (cli.info, ["--json=1"]),
    (cli.encode, []), (cli.decode, ["a.npy", "b.npy"]), (cli.decode, []),
])
def test_help_errors_and_unusual_spellings_are_left_to_typer(command, argv):
    with pytest.raises(NotPlain):
        parse(command, argv)
