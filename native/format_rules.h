/* Written by tests/conformance/make_rules.py from runtime/format_rules.json: edit that, then run it. */
#ifndef VAE_FORMAT_RULES_H
#define VAE_FORMAT_RULES_H

#define VAE_FORMAT "vae-edge-onnx"
#define VAE_FORMAT_VERSION_NEWEST 2 /* the newest format_version read */
#define VAE_FORMAT_VERSIONS {1, 2} /* the versions read */
#define VAE_FORMAT_VERSIONS_TEXT "1, 2"
/* the versions whose folders load prior.onnx */
#define VAE_PRIOR_VERSIONS {2}
#define VAE_DEFAULT_FOLDER "vae-onnx" /* the model when none is named */
#define VAE_PRECISIONS {{"fp32", "encoder", "decoder"}, {"int8", "encoder_int8", "decoder_int8"}} /* {precision, encoder key, decoder key} */
#define VAE_PRECISIONS_TEXT "fp32, int8"
#define VAE_PATH_FIRST "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_" /* a path part's first character */
#define VAE_PATH_REST "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
#define VAE_PATH_SEPARATOR '/'
#define VAE_META_LIMIT 1048576 /* vae.json's bytes, at most */
#define VAE_META_DEPTH 32 /* its arrays and objects nest at most this deep */
#define VAE_SIZE_BELOW 2147483648LL /* sizes and files[*].bytes are below it */
#define VAE_MAX_COUNT 1048576 /* the most latents or images one call gives or takes */
#define VAE_MAX_THREADS 1024
#define VAE_BATCH_SIZE 1024 /* latents per onnxruntime run by default */
/* {major, minor, newest IR version, newest ai.onnx opset}: what each onnxruntime release reads */
#define VAE_ONNXRUNTIME_READS {{1, 12, 8, 17}, {1, 14, 8, 18}, {1, 15, 9, 18}, {1, 16, 9, 19}, {1, 17, 9, 20}, {1, 18, 10, 21}, {1, 21, 10, 22}, {1, 23, 11, 23}}

/* Messages: printf formats; the comment names the arguments in order. */
#define VAE_MSG_MISSING "no exported model at %s; run `vae-export model.pt --out %s` first" /* folder, folder */
#define VAE_MSG_META_TOO_LARGE "%s is larger than 1 MiB, the limit for vae.json" /* path */
#define VAE_MSG_META_TOO_DEEP "%s is nested deeper than %d levels" /* path, depth */
#define VAE_MSG_META_NOT_FORMAT "%s is not a vae-edge ONNX export (format should be '%s')" /* path, format */
#define VAE_MSG_VERSION_NEWER "%s has format_version %s, newer than this vae-edge reads (up to %d); upgrade vae-edge" /* path, version, newest */
#define VAE_MSG_VERSION_NEWER_NEEDS "%s has format_version %s, newer than this vae-edge reads (up to %d); it needs vae-edge >= %s%s" /* path, version, newest, need, how */
#define VAE_MSG_VERSION_OTHER "%s has format_version %s; this vae-edge reads versions %s" /* path, version, versions */
#define VAE_MSG_META_INVALID "%s lacks valid model.input_shape, model.latent_dim or files" /* path */
#define VAE_MSG_NO_PRIOR "%s has format_version %s but no valid prior (name, and sample.inputs naming eps) (docs/priors.md)" /* path, version */
#define VAE_MSG_NO_ENTRY "%s lists no %s file (path, sha256 and bytes)" /* meta, key */
#define VAE_MSG_NOT_PLAIN "%s: %s path '%s' is not a plain path inside the model folder (parts of letters, digits, . _ - joined by /)" /* meta, key, name */
#define VAE_MSG_OUTSIDE "%s resolves outside the model folder" /* path */
#define VAE_MSG_NOT_REGULAR "%s is not a regular file" /* path */
#define VAE_MSG_WRONG_SIZE "%s has %lld bytes; vae.json says %lld" /* path, size, bytes */
#define VAE_MSG_SHA256 "%s does not match the sha256 in vae.json (tampered or corrupt); refusing to load it" /* path */
#define VAE_MSG_INT8_MISSING "%s has no int8 files; re-export with `vae-export ... --quantize int8` or use precision %s" /* folder, fp32 */
#define VAE_MSG_INT8_OVER_BOUND "%s has no int8 files: at export their error against fp32 was over the bound (vae-info shows it); use precision %s" /* folder, fp32 */
#define VAE_MSG_ONNX_TOO_NEW "%s needs %s (installed: %s): it is ONNX IR version %lld, opset %lld; %s" /* path, needs, installed, ir_version, opset, fix */
#define VAE_MSG_NEEDS_RELEASE "onnxruntime >= %s" /* release */
#define VAE_MSG_NEEDS_NEWER "an onnxruntime newer than %s" /* release */
#define VAE_MSG_FIX_OPSET "upgrade onnxruntime, or re-export with vae-export --opset %lld" /* opset */
#define VAE_MSG_FIX_UPGRADE "upgrade onnxruntime to %s or newer" /* release */
#define VAE_MSG_PRECISION "precision must be one of %s, got %s" /* precisions, got */
#define VAE_MSG_COUNT_INTEGER "%s must be an integer, got %s" /* what, got */
#define VAE_MSG_COUNT_POSITIVE "%s must be >= 1, got %zu" /* what, count */
#define VAE_MSG_COUNT_LIMIT "%s must be at most %d per call, got %zu" /* what, limit, count */
#define VAE_MSG_TEMPERATURE "temperature must be a finite number >= 0, got %g" /* temperature */
#define VAE_MSG_SEED "seed must be an integer in [0, 2^53), got %llu" /* seed */
#define VAE_MSG_NOT_JSON "%s is not readable JSON (corrupt?)%s" /* path, reason */
#define VAE_MSG_NOT_ONNX "%s is not a loadable ONNX model (corrupt?): %s" /* path, reason */
#define VAE_MSG_OUTSIDE_LIST "%s %s, which a model folder may not" /* path, what */
#define VAE_MSG_G1_EXTERNAL "stores a tensor outside the file (external data)" /*  */
#define VAE_MSG_G1_SPARSE "holds a sparse tensor" /*  */
#define VAE_MSG_G1_FUNCTIONS "defines local functions" /*  */
#define VAE_MSG_G1_SUBGRAPH "holds a subgraph" /*  */
#define VAE_MSG_G1_DOMAIN "uses operator domain '%s'" /* domain */
#define VAE_MSG_FAILED_TO_RUN "%s failed to run: %s" /* path, reason */
#define VAE_MSG_RETURNED "%s returned %s; expected float32 %s" /* path, got, shape */
#define VAE_MSG_NOT_DECODER "%s: the decoder file is not a decoder (z -> x): it has %zu inputs and %zu outputs%s" /* path, inputs, outputs, swapped */
#define VAE_MSG_NOT_ENCODER "%s: the encoder file is not an encoder (x -> mu, logvar): it has %zu inputs and %zu outputs%s" /* path, inputs, outputs, swapped */
#define VAE_MSG_SWAPPED "; encoder and decoder swapped?" /*  */
#define VAE_MSG_ENCODER_NAMES "%s: the encoder's outputs are named %s; expected mu and logvar" /* path, names */
#define VAE_MSG_DECODER_SHAPE "%s: the decoder returns x of shape %s but vae.json says input_shape %s" /* path, got, shape */
#define VAE_MSG_ENCODER_SHAPE "%s: the encoder takes x of shape %s but vae.json says input_shape %s" /* path, got, shape */
#define VAE_MSG_DECODER_LATENT "%s: the decoder and vae.json disagree on latent_dim: vae.json says %d, the decoder takes %s" /* path, latent, got */
#define VAE_MSG_NOT_DESCRIBED "%s is not the %s vae.json describes: it maps %s -> %s; expected %s -> %s" /* path, what, takes, gives, want_in, want_out */

#endif
