/* vae-edge in C: load an exported VAE folder (vae-export's files), check it, decode latents, sample images.
 *
 *     char err[VAE_ERROR_SIZE];
 *     vae_model *vae = vae_load("vae-onnx", NULL, err);          // NULL options: fp32, onnxruntime found for us
 *     if (!vae) { fprintf(stderr, "%s\n", err); return 2; }
 *     float *x = malloc(64 * vae_image_size(vae) * sizeof(float));
 *     if (vae_sample(vae, 64, 0, 1.0f, x, err)) { ... }         // 64 images (C x H x W each) in [0, 1]
 *     vae_free(vae);
 *
 * The same checks as the Python runtime: vae.json's format and format_version (1, or 2: a learned prior, whose
 * prior.onnx turns noise into z), shapes and latent size, the sha256 of every file read, and each file's IR version
 * and opset against the onnxruntime loaded (docs/format.md, rule 4h). A folder may come from a stranger (docs/security.md): every file
 * is a regular file inside it of the size vae.json says, each .onnx holds nothing outside a closed list, and every
 * graph's output is checked after each run. Every error is one line in err (VAE_ERROR_SIZE bytes).
 * onnxruntime is loaded with dlopen (see vae_load); the decoder and a format-2 folder's prior.onnx at load, score.onnx
 * on the first vae_score, and the encoder when options->encoder asks for it. A loaded model may be used from one thread at a time.
 */
#ifndef VAE_EDGE_H
#define VAE_EDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "format_rules.h" /* VAE_FORMAT, VAE_FORMAT_VERSION_NEWEST, VAE_MAX_COUNT (2^20 per call), ... */

/* Deprecated: VAE_FORMAT_VERSION_NEWEST's name before 0.2.0, kept for 0.2.x. */
#define VAE_FORMAT_VERSION VAE_FORMAT_VERSION_NEWEST

#define VAE_ERROR_SIZE 512
/* The oldest onnxruntime whose C API this program asks for (API version N is release 1.N): 1.19, the first whose
 * Python wheel ships libonnxruntime.so (tests/test_native.py runs it, and the newest). */
#define VAE_OLDEST_ONNXRUNTIME_MINOR 19

typedef struct vae_model vae_model;

typedef struct {
    const char *precision;        /* "fp32" (NULL means this) or "int8" */
    const char *onnxruntime_path; /* libonnxruntime.so to dlopen; NULL: $VAE_EDGE_ONNXRUNTIME, else the one in
                                     python3's onnxruntime package (onnxruntime/capi/), else the system's */
    int threads;                  /* onnxruntime intra-op threads; 0: onnxruntime decides */
    int encoder;                  /* 1: load and check the encoder too (for vae_encode); 0: the decoder alone */
} vae_options;

/* Load and check the folder's vae.json, decoder, (format 2) prior.onnx and, with options->encoder, the encoder (as
 * the Python runtime's VAE.load; without it, as VAE.load(decoder_only=True)); NULL (and err filled) on any problem. */
vae_model *vae_load(const char *folder, const vae_options *options, char err[VAE_ERROR_SIZE]);

/* Check every file vae.json lists against its sha256 (as vae-info does): 0 if all are intact, else the number of
 * bad files, the first one's reason in err; -1 if vae.json itself is bad. */
int vae_check(const char *folder, char err[VAE_ERROR_SIZE]);

int vae_latent_dim(const vae_model *vae);
void vae_input_shape(const vae_model *vae, int shape[3]); /* C, H, W */
size_t vae_image_size(const vae_model *vae);              /* C * H * W floats per image */
const char *vae_onnxruntime_version(const vae_model *vae);

/* z: n x latent_dim floats -> x: n x C x H x W pixel probabilities in [0, 1]. 0 on success, else -1 and err. */
int vae_decode(vae_model *vae, const float *z, size_t n, float *x, char err[VAE_ERROR_SIZE]);

/* x: n (at most VAE_MAX_COUNT) images, C x H x W floats in [0, 1] -> mu and logvar, n x latent_dim floats each, from
 * the encoder (a model loaded with options->encoder). 0 on success, else -1 and err. */
int vae_encode(vae_model *vae, const float *x, size_t n, float *mu, float *logvar, char err[VAE_ERROR_SIZE]);

/* n (at most VAE_MAX_COUNT) x latent_dim latents: the z that vae_sample decodes, Python's and the browser's for the same seed.
 * z = temperature * eps, eps = vae_gaussian(n * latent_dim, seed); in a format-2 folder (a learned prior)
 * z = prior.onnx(temperature * eps, u), u = vae_uniform(n, seed) (never scaled by temperature). */
int vae_latents(const vae_model *vae, size_t n, uint64_t seed, double temperature, float *z, char err[VAE_ERROR_SIZE]);

/* n (at most VAE_MAX_COUNT) images decoded from vae_latents(n, seed, temperature): Python's and the browser's images for a seed. */
int vae_sample(vae_model *vae, size_t n, uint64_t seed, double temperature, float *x, char err[VAE_ERROR_SIZE]);

/* The first count standard normal floats of seed's stream eps (seed < 2^53; docs/noise.md): Philox4x32-10 and
 * Marsaglia's polar method, the bits runtime/random.py and web/src/random.js draw for the seed. */
void vae_gaussian(float *out, size_t count, uint64_t seed);

/* count normals of seed's stream eps from number start: a slice of vae_gaussian's endless draw (docs/noise.md). */
void vae_gaussian_at(float *out, size_t count, uint64_t seed, uint64_t start);

/* The first count floats in [0, 1) (24 bits each) of seed's stream u (seed < 2^53; docs/noise.md), as Python and
 * JavaScript draw them: a learned prior's u (a mixture's component floor(u K)). */
void vae_uniform(float *out, size_t count, uint64_t seed);

/* Each of n images' score in nats (out_nats, n doubles; higher: less likely under the model): the negative ELBO at
 * k = 1, the negative IWAE bound with k importance samples for k > 1 (n, k at most VAE_MAX_COUNT), from the folder's
 * score.onnx (x [n, C, H, W], eps [k, n, latent_dim] -> log w [k, n]), read, checked and held to that contract on
 * the first score; a folder without one is refused ("re-export"). x: n x C x H x W floats in [0, 1], binarized at
 * 0.5 (a pixel >= 0.5 is 1) for a binarized model (vae.json's recipe.binarize). eps: k x n x latent_dim floats
 * ([sample, image, dimension]), or NULL for the seed's noise: image i's sample s is normals ((start + i) k + s)
 * latent_dim .. of stream eps, as Python's log_likelihood and JavaScript's vae.score draw them; start (< 2^53) is the
 * index of x's first image in a larger set scored in parts, as Python's VAE.score(start=). The k log-weights of an
 * image are summed by a running logsumexp in double. */
int vae_score(vae_model *vae, size_t n, const float *x, size_t k, uint64_t seed, uint64_t start, const float *eps,
              double *out_nats, char err[VAE_ERROR_SIZE]);

void vae_free(vae_model *vae);

#ifdef __cplusplus
}
#endif
#endif
