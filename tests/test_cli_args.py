"""runtime/args.py: every runtime command's --help lists its options; a usage error is one line naming the command,
and exit code 2, before any work."""
import pytest

from conftest import invoke
from vae_edge.runtime.cli import decode_main, encode_main, info_main, sample_main
from vae_edge.runtime.score_cli import score_main
from vae_edge.runtime.serve.cli import main as serve_main

OPTIONS = {
    "vae-sample": (sample_main, ["--n", "-n", "--model", "-m", "--out", "-o", "--npy", "--out-dir", "--force",
                                 "--seed", "--temperature", "-t", "--nrow", "--precision", "--threads", "--provider",
                                 "--batch-size", "[default: 64]"]),
    "vae-encode": (encode_main, ["INPUTS", "--out", "--index", "--model", "--sample", "--seed", "--glob", "--strict",
                                 "--quiet", "-q", "--precision", "--threads", "--provider", "--batch-size",
                                 "[default: latents.npy]"]),
    "vae-decode": (decode_main, ["LATENTS.npy", "--out", "--npy", "--out-dir", "--force", "--model", "--nrow",
                                 "--precision", "--threads", "--provider", "--batch-size"]),
    "vae-info": (info_main, ["--model", "--json", "--list", "--version"]),
    "vae-score": (score_main, ["INPUTS", "--out", "--jsonl", "--model", "--k", "--seed", "--bits-per-dim", "--glob",
                               "--threshold", "--calibrate", "--fpr", "--save", "--strict", "--quiet", "--precision",
                               "--threads", "--provider", "--batch-size", "[default: 0.01]"]),
    "vae-serve": (serve_main, ["--model", "--host", "--port", "--precision", "--threads", "--provider", "--workers",
                               "--allow-remote", "--token-file", "--cors-origins", "--max-batch", "--max-wait-ms",
                               "--max-queue", "--max-n", "--max-body", "--max-pixels", "--max-score-samples",
                               "--threshold", "--timeout", "--no-access-log", "[default: 8000]"]),
}


@pytest.mark.parametrize("command", list(OPTIONS))
def test_help_lists_every_option_with_its_default(command, monkeypatch):
    main, options = OPTIONS[command]
    monkeypatch.setenv("COLUMNS", "200")
    r = invoke(main, "--help")
    assert (r.exit_code, r.stderr) == (0, "")
    assert r.stdout.startswith(f"usage: {command} ")
    for option in options:
        assert option in r.stdout, option


@pytest.mark.parametrize("command,args,message", [
    ("vae-sample", ["--bogus"], "unrecognized arguments: --bogus"),
    ("vae-sample", ["--n", "abc"], "argument --n/-n: invalid int value: 'abc'"),
    ("vae-sample", ["--temperature", "warm"], "argument --temperature/-t: invalid float value: 'warm'"),
    ("vae-sample", ["--temperature"], "argument --temperature/-t: expected one argument"),
    ("vae-sample", ["--temp", "0.5"], "unrecognized arguments: --temp 0.5"),  # no abbreviations
    ("vae-sample", ["extra"], "unrecognized arguments: extra"),
    ("vae-encode", [], "the following arguments are required: INPUTS"),
    ("vae-decode", [], "the following arguments are required: LATENTS.npy"),
    ("vae-decode", ["a.npy", "b.npy"], "unrecognized arguments: b.npy"),
    ("vae-info", ["--json=1"], "argument --json: ignored explicit argument '1'"),
    ("vae-score", ["x.npy", "--k", "many"], "argument --k: invalid int value: 'many'"),
    ("vae-serve", ["--port", "http"], "argument --port: invalid int value: 'http'"),
])
def test_a_usage_error_is_one_line_naming_the_command_and_exit_code_2(tmp_path, monkeypatch, command, args, message):
    monkeypatch.chdir(tmp_path)
    r = invoke(OPTIONS[command][0], *args)
    assert (r.exit_code, r.stdout, r.stderr) == (2, "", f"{command}: error: {message}\n")
    assert list(tmp_path.iterdir()) == []
