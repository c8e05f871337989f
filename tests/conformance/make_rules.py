"""Write the JavaScript and C readers' copies of the format's rules from their one source, runtime/format_rules.json
(docs/format.md): web/src/format_rules.js (an ES module) and native/format_rules.h (macros). Python reads the JSON
itself. Deterministic; tests/test_rules.py checks that what is checked in is what this writes.

    python tests/conformance/make_rules.py
"""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "runtime" / "format_rules.json"
JS, C = ROOT / "web" / "src" / "format_rules.js", ROOT / "native" / "format_rules.h"
NOTICE = "Written by tests/conformance/make_rules.py from runtime/format_rules.json: edit that, then run it."
# The printf conversion of each placeholder that is not a string (C passes the others as char *).
C_FORMATS = {"depth": "%d", "newest": "%d", "size": "%lld", "bytes": "%lld", "ir_version": "%lld", "opset": "%lld",
             "limit": "%d", "count": "%zu", "temperature": "%g", "seed": "%llu", "inputs": "%zu", "outputs": "%zu",
             "latent": "%d"}
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def rules() -> dict:
    return json.loads(SOURCE.read_text())


def javascript(r: dict) -> str:
    return f"// {NOTICE}\n\nexport const RULES = {json.dumps(r, indent=2)};\n"


def _chars(ranges: str) -> str:
    """A character class's contents ("A-Za-z0-9._-") as the characters it holds, in a C string."""
    out, i = "", 0
    while i < len(ranges):
        if i + 2 < len(ranges) and ranges[i + 1] == "-":
            out += "".join(map(chr, range(ord(ranges[i]), ord(ranges[i + 2]) + 1)))
            i += 3
        else:
            out += ranges[i]
            i += 1
    return out


def _printf(template: str) -> tuple[str, list[str]]:
    """A template as a printf format and its arguments' names in order."""
    names = PLACEHOLDER.findall(template)
    text = PLACEHOLDER.sub(lambda m: C_FORMATS.get(m[1], "%s"), template.replace("%", "%%"))
    return json.dumps(text), names


def c_header(r: dict) -> str:
    versions = sorted(map(int, r["format_versions"]))
    with_prior = ", ".join(v for v, files in r["format_versions"].items() if "prior" in files["loads"])
    precisions = ", ".join("{" + ", ".join(map(json.dumps, [p, *keys])) + "}" for p, keys in r["precisions"].items())
    limits = r["limits"]
    reads = ", ".join(f"{{{release.replace('.', ', ')}, {ir}, {opset}}}"
                      for release, ir, opset in r["onnxruntime_reads"])
    lines = [
        f"/* {NOTICE} */",
        "#ifndef VAE_FORMAT_RULES_H",
        "#define VAE_FORMAT_RULES_H",
        "",
        f"#define VAE_FORMAT {json.dumps(r['format'])}",
        f"#define VAE_FORMAT_VERSION_NEWEST {versions[-1]} /* the newest format_version read */",
        f"#define VAE_FORMAT_VERSIONS {{{', '.join(map(str, versions))}}} /* the versions read */",
        f"#define VAE_FORMAT_VERSIONS_TEXT \"{', '.join(map(str, versions))}\"",
        "/* the versions whose folders load prior.onnx */",
        f"#define VAE_PRIOR_VERSIONS {{{with_prior}}}",
        f"#define VAE_DEFAULT_FOLDER {json.dumps(r['default_folder'])} /* the model when none is named */",
        f"#define VAE_PRECISIONS {{{precisions}}} /* {{precision, encoder key, decoder key}} */",
        f"#define VAE_PRECISIONS_TEXT {json.dumps(', '.join(r['precisions']))}",
        f"#define VAE_PATH_FIRST {json.dumps(_chars(r['path_part']['first']))} /* a path part's first character */",
        f"#define VAE_PATH_REST {json.dumps(_chars(r['path_part']['rest']))}",
        f"#define VAE_PATH_SEPARATOR '{r['path_part']['separator']}'",
        f"#define VAE_META_LIMIT {limits['meta_bytes']} /* vae.json's bytes, at most */",
        f"#define VAE_META_DEPTH {limits['meta_depth']} /* its arrays and objects nest at most this deep */",
        f"#define VAE_SIZE_BELOW {limits['size_below']}LL /* sizes and files[*].bytes are below it */",
        f"#define VAE_MAX_COUNT {limits['count']} /* the most latents or images one call gives or takes */",
        f"#define VAE_MAX_THREADS {limits['threads']}",
        f"#define VAE_BATCH_SIZE {limits['batch_size']} /* latents per onnxruntime run by default */",
        "/* {major, minor, newest IR version, newest ai.onnx opset}: what each onnxruntime release reads */",
        f"#define VAE_ONNXRUNTIME_READS {{{reads}}}",
        "",
        "/* Messages: printf formats; the comment names the arguments in order. */",
    ]
    for name, template in r["messages"].items():
        text, args = _printf(template)
        lines.append(f"#define VAE_MSG_{name.upper()} {text} /* {', '.join(args)} */")
    return "\n".join(lines + ["", "#endif", ""])


def main() -> None:
    r = rules()
    JS.write_text(javascript(r))
    C.write_text(c_header(r))
    print(f"wrote {JS.relative_to(ROOT)} and {C.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
