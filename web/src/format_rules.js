// Written by tests/conformance/make_rules.py from runtime/format_rules.json: edit that, then run it.

export const RULES = {
  "about": "The facts every reader of a model folder shares (docs/format.md): the source. Python reads this file; tests/conformance/make_rules.py writes web/src/format_rules.js and native/format_rules.h from it; tests/test_rules.py fails when a copy drifts.",
  "format": "vae-edge-onnx",
  "format_version_written": 1,
  "default_folder": "vae-onnx",
  "format_versions": {
    "1": {
      "loads": []
    },
    "2": {
      "loads": [
        "prior"
      ]
    }
  },
  "precisions": {
    "fp32": [
      "encoder",
      "decoder"
    ],
    "int8": [
      "encoder_int8",
      "decoder_int8"
    ]
  },
  "path_part": {
    "first": "A-Za-z0-9_",
    "rest": "A-Za-z0-9._-",
    "separator": "/"
  },
  "limits": {
    "meta_bytes": 1048576,
    "meta_depth": 32,
    "size_below": 2147483648,
    "count": 1048576,
    "threads": 1024,
    "batch_size": 1024
  },
  "onnxruntime_reads": [
    [
      "1.12",
      8,
      17
    ],
    [
      "1.14",
      8,
      18
    ],
    [
      "1.15",
      9,
      18
    ],
    [
      "1.16",
      9,
      19
    ],
    [
      "1.17",
      9,
      20
    ],
    [
      "1.18",
      10,
      21
    ],
    [
      "1.21",
      10,
      22
    ],
    [
      "1.23",
      11,
      23
    ]
  ],
  "messages": {
    "missing": "no exported model at {folder}; run `vae-export model.pt --out {folder}` first",
    "meta_too_large": "{path} is larger than 1 MiB, the limit for vae.json",
    "meta_too_deep": "{path} is nested deeper than {depth} levels",
    "meta_not_format": "{path} is not a vae-edge ONNX export (format should be '{format}')",
    "version_newer": "{path} has format_version {version}, newer than this vae-edge reads (up to {newest}); upgrade vae-edge",
    "version_newer_needs": "{path} has format_version {version}, newer than this vae-edge reads (up to {newest}); it needs vae-edge >= {need}{how}",
    "version_other": "{path} has format_version {version}; this vae-edge reads versions {versions}",
    "meta_invalid": "{path} lacks valid model.input_shape, model.latent_dim or files",
    "no_prior": "{path} has format_version {version} but no valid prior (name, and sample.inputs naming eps) (docs/priors.md)",
    "no_entry": "{meta} lists no {key} file (path, sha256 and bytes)",
    "not_plain": "{meta}: {key} path '{name}' is not a plain path inside the model folder (parts of letters, digits, . _ - joined by /)",
    "outside": "{path} resolves outside the model folder",
    "not_regular": "{path} is not a regular file",
    "wrong_size": "{path} has {size} bytes; vae.json says {bytes}",
    "sha256": "{path} does not match the sha256 in vae.json (tampered or corrupt); refusing to load it",
    "int8_missing": "{folder} has no int8 files; re-export with `vae-export ... --quantize int8` or use precision {fp32}",
    "int8_over_bound": "{folder} has no int8 files: at export their error against fp32 was over the bound (vae-info shows it); use precision {fp32}",
    "onnx_too_new": "{path} needs {needs} (installed: {installed}): it is ONNX IR version {ir_version}, opset {opset}; {fix}",
    "needs_release": "onnxruntime >= {release}",
    "needs_newer": "an onnxruntime newer than {release}",
    "fix_opset": "upgrade onnxruntime, or re-export with vae-export --opset {opset}",
    "fix_upgrade": "upgrade onnxruntime to {release} or newer",
    "precision": "precision must be one of {precisions}, got {got}",
    "count_integer": "{what} must be an integer, got {got}",
    "count_positive": "{what} must be >= 1, got {count}",
    "count_limit": "{what} must be at most {limit} per call, got {count}",
    "temperature": "temperature must be a finite number >= 0, got {temperature}",
    "seed": "seed must be an integer in [0, 2^53), got {seed}",
    "not_json": "{path} is not readable JSON (corrupt?){reason}",
    "not_onnx": "{path} is not a loadable ONNX model (corrupt?): {reason}",
    "outside_list": "{path} {what}, which a model folder may not",
    "g1_external": "stores a tensor outside the file (external data)",
    "g1_sparse": "holds a sparse tensor",
    "g1_functions": "defines local functions",
    "g1_subgraph": "holds a subgraph",
    "g1_domain": "uses operator domain '{domain}'",
    "failed_to_run": "{path} failed to run: {reason}",
    "returned": "{path} returned {got}; expected float32 {shape}",
    "not_decoder": "{path}: the decoder file is not a decoder (z -> x): it has {inputs} inputs and {outputs} outputs{swapped}",
    "not_encoder": "{path}: the encoder file is not an encoder (x -> mu, logvar): it has {inputs} inputs and {outputs} outputs{swapped}",
    "swapped": "; encoder and decoder swapped?",
    "encoder_names": "{path}: the encoder's outputs are named {names}; expected mu and logvar",
    "decoder_shape": "{path}: the decoder returns x of shape {got} but vae.json says input_shape {shape}",
    "encoder_shape": "{path}: the encoder takes x of shape {got} but vae.json says input_shape {shape}",
    "decoder_latent": "{path}: the decoder and vae.json disagree on latent_dim: vae.json says {latent}, the decoder takes {got}",
    "not_described": "{path} is not the {what} vae.json describes: it maps {takes} -> {gives}; expected {want_in} -> {want_out}"
  }
};
