"""Mutations the tests must catch: bugs that once slipped through, each a text patch of one file.

    python tests/mutants.py [NAME ...]     (make mutants)

For each mutant: its tests run on the file as it is (they must pass), then with the patch applied (at least one
must fail), then the file is put back, byte for byte and with its old modification time, even on Ctrl-C or
SIGTERM, and the build output made from the mutation (C objects) removed. Prints one line a mutant (caught,
MISSED, STALE: the patch no longer applies, or skipped with the reason) and exits 1 unless every mutant that ran
was caught.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Mutant:
    name: str
    path: str  # relative to the repository
    find: str  # the text replaced: it must occur exactly once
    replace: str
    tests: list[str]  # pytest node ids, or a command line (starting with "node")
    gpu: bool = False  # its test needs a CUDA device
    built: str = ""  # build output made from the file: removed afterwards, as make would keep the mutant's objects


MUTANTS = [
    Mutant("iwae-sign", "train/step.py", "return -iwae_objective(", "return iwae_objective(",
           ["tests/test_step.py::test_one_iwae_step_is_the_adam_update_of_the_summed_negative_iwae_bound"]),
    Mutant("amp-off-in-the-captured-step", "train/precision.py",
           "    if not (module.bf16 and module.training):",
           "    if not (module.bf16 and module.training) or torch.cuda.is_current_stream_capturing():",
           ["tests/test_gpu.py::test_amp_runs_the_captured_step_in_bfloat16"], gpu=True),
    Mutant("bf16-posterior-into-the-densities", "train/model.py",
           "        return widen(mu), widen(logvar).clamp(LOGVAR_MIN, LOGVAR_MAX)",
           "        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)",
           ["tests/test_precision.py::test_with_bf16_the_layers_run_in_bf16_and_every_density_in_fp32"]),
    Mutant("last-conv-rewrite-accepts-any-conv", "export/int8_decoder.py",
           'if (any(attrs.get("pads", [0])) or set(attrs.get("strides", [1])) != {1} or attrs.get("group", 1) != 1\n'
           '            or attrs.get("mode", b"DCR")',
           'if (attrs.get("mode", b"DCR")',
           ["tests/test_int8_guards.py::test_the_last_conv_rewrite_refuses_padding_strides_and_groups"]),
    Mutant("int8-chooser-keeps-the-worst-way", "export/quantize.py",
           'if best is None or err["mean_abs"] < best[2]["mean_abs"]:',
           'if best is None or err["mean_abs"] > best[2]["mean_abs"]:',
           ["tests/test_int8_guards.py::test_forced_over_the_bound_each_graph_keeps_its_most_accurate_way"]),
    Mutant("polar-pair-x-twice", "web/src/random.js", "out[at + 1] = (y * (1 / HALF)) * f;",
           "out[at + 1] = (x * (1 / HALF)) * f;", ["node", "--test", "web/test/random.test.js"]),
    Mutant("u-drawn-from-the-bits-of-eps", "runtime/random.py",
           "blocks >> np.uint64(32), U, 0)", "blocks >> np.uint64(32), EPS, 0)",
           ["tests/test_noise.py::test_each_seed_draws_the_known_numbers_of_each_stream_bit_for_bit"]),
    Mutant("temperature-scales-u-in-javascript", "web/src/prior.js", "return { eps, u: uniform(n, seed) };",
           "return { eps, u: uniform(n, seed).map((v) => v * temperature) };",
           ["node", "--test", "web/test/random.test.js"]),
    Mutant("a-default-model-recipe-does-not-name", "train/config.py", "batch_size: int = 128", "batch_size: int = 256",
           ["tests/test_bundled.py::test_vae_json_records_the_recipe_that_make_model_trains"]),
    Mutant("a-run-failure-escapes-as-onnxruntimes-own", "runtime/sessions.py",
           'if not type(e).__module__.startswith("onnxruntime"):', "if True:",
           ["tests/test_runtime.py::test_a_file_that_loads_but_fails_to_run_says_so_in_one_line"]),
    Mutant("ctrl-c-during-a-write-leaves-the-temporary-file", "runtime/outputs.py",
           "    except BaseException as e:", "    except Exception as e:",
           ["tests/test_outputs.py::test_keyboard_interrupt_during_a_write_leaves_no_temporary_file"]),
    Mutant("images-in-any-layout-with-the-right-pixel-count", "runtime/inputs.py",
           "if x.ndim == 4 and x.shape[1:] == shape:", "if x.ndim == 4 and math.prod(x.shape[1:]) == d:",
           ["tests/test_runtime.py::test_channels_last_images_are_refused_in_one_line"]),
    Mutant("parity-compares-the-last-batch-size-only", "export/parity.py", "for n in PARITY_BATCH_SIZES:",
           "for n in PARITY_BATCH_SIZES[-1:]:",
           ["tests/test_export.py::test_a_decoder_off_by_1e_3_at_one_listed_batch_size_only_fails_the_parity_check"]),
    Mutant("the-c-library-accepts-seed-2-to-the-53", "native/vae_edge.c", "if (seed >= (uint64_t)1 << 53)",
           "if (seed > (uint64_t)1 << 53)", ["tests/test_native.py::"
           "test_the_c_library_samples_with_seed_2_to_the_53_minus_1_and_refuses_2_to_the_53_in_one_line"],
           built="build/native"),
    Mutant("a-constant-attribute-is-not-walked", "runtime/closed_list.py",
           "if field in (ATTR_T, ATTR_TENSORS) and wire == 2:", "if False:",
           ["tests/test_closed_list.py::test_a_constant_attribute_stored_outside_the_file_is_refused"]),
    Mutant("a-run-output-of-the-wrong-batch-passes", "runtime/sessions.py",
           "got.dtype == np.float32 and got.shape == tuple(shape)", "got.dtype == np.float32",
           ["tests/test_run_outputs.py::test_a_decoder_that_returns_one_image_whatever_the_batch_is_refused"]),
    Mutant("a-run-failure-escapes-in-javascript", "web/src/sessions.js", "  return failingInOneLine(session, where);",
           "  return session;", ["node", "--test", "web/test/conformance.test.js"]),
]


def run_tests(m: Mutant) -> subprocess.CompletedProcess:
    cmd = m.tests if m.tests[0] == "node" else [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                                 *m.tests]
    if cmd[0] == "node":
        cmd = [shutil.which("node") or "node", *cmd[1:]]
    # no .pyc written: a mutant's bytecode must never outlive it
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def skip_reason(m: Mutant) -> str | None:
    if m.tests[0] == "node" and shutil.which("node") is None:
        return "node is not installed"
    if m.gpu:
        import torch

        if not torch.cuda.is_available():
            return "needs a CUDA GPU: torch.cuda.is_available() is False here"
    return None


def check(m: Mutant) -> str:
    path = REPO / m.path
    original = path.read_bytes()
    text = original.decode()
    if text.count(m.find) != 1:
        return (f"STALE    {m.name}: the text to replace occurs {text.count(m.find)} times in {m.path}; "
                "update the mutant")
    why = skip_reason(m)
    if why:
        return f"skipped  {m.name}: {why}"
    control = run_tests(m)
    if control.returncode != 0:
        return (f"BROKEN   {m.name}: its tests fail without the mutation:\n"
                f"{control.stdout[-1500:]}{control.stderr[-1500:]}")
    stat = path.stat()
    try:
        path.write_text(text.replace(m.find, m.replace))
        mutated = run_tests(m)
    finally:  # also on Ctrl-C and SIGTERM (raised as KeyboardInterrupt below)
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        if m.built:
            shutil.rmtree(REPO / m.built, ignore_errors=True)
    if mutated.returncode == 1 or (m.tests[0] == "node" and mutated.returncode != 0):
        return f"caught   {m.name} ({m.path})"
    if mutated.returncode == 0:
        return f"MISSED   {m.name} ({m.path}): every test passed with the mutation"
    return f"BROKEN   {m.name}: pytest exited {mutated.returncode}:\n{mutated.stdout[-1500:]}{mutated.stderr[-1500:]}"


def main(names: list[str]) -> int:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # restore the file on SIGTERM as on Ctrl-C
    unknown = set(names) - {m.name for m in MUTANTS}
    if unknown:
        print(f"unknown mutants: {', '.join(sorted(unknown))}; known: {', '.join(m.name for m in MUTANTS)}")
        return 2
    results = []
    for m in [m for m in MUTANTS if not names or m.name in names]:
        start = time.perf_counter()
        results.append(check(m))
        print(f"{results[-1]}  [{time.perf_counter() - start:.0f} s]", flush=True)
    caught = sum(r.startswith("caught") for r in results)
    ran = sum(not r.startswith("skipped") for r in results)
    print(f"{caught} of {ran} mutants caught ({len(results) - ran} skipped)")
    return 0 if caught == ran else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
