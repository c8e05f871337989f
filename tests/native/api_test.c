/* The C library's public API called directly, as an app links it (tests/test_native.py builds this against
 * build/native/libvae_edge.a):
 *
 *     api_test FOLDER LIBONNXRUNTIME SEED N
 *
 * vae_load, then vae_sample(N, SEED, temperature 1): prints "ok" and the pixels' range, exit 0; any error in one
 * line on stderr, exit 2. SEED is read as an unsigned 64-bit integer, so seeds the command line refuses reach
 * the library. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "vae_edge.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: api_test FOLDER LIBONNXRUNTIME SEED N\n");
        return 2;
    }
    char err[VAE_ERROR_SIZE], *end;
    errno = 0;
    uint64_t seed = strtoull(argv[3], &end, 10);
    size_t n = (size_t)strtoul(argv[4], NULL, 10);
    if (errno || *end) {
        fprintf(stderr, "api_test: bad seed %s\n", argv[3]);
        return 2;
    }
    vae_options options = {.precision = "fp32", .onnxruntime_path = argv[2], .threads = 1};
    vae_model *vae = vae_load(argv[1], &options, err);
    if (!vae) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    float *x = malloc(n * vae_image_size(vae) * sizeof(float));
    int rc = x ? vae_sample(vae, n, seed, 1.0, x, err) : -1;
    if (rc == 0) {
        float lo = x[0], hi = x[0];
        for (size_t i = 1; i < n * vae_image_size(vae); i++) {
            lo = x[i] < lo ? x[i] : lo;
            hi = x[i] > hi ? x[i] : hi;
        }
        printf("ok: %zu images, pixels in [%g, %g]\n", n, lo, hi);
    } else {
        fprintf(stderr, "%s\n", x ? err : "api_test: out of memory");
    }
    free(x);
    vae_free(vae);
    return rc ? 2 : 0;
}
