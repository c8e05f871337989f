/* The C side of tests/test_noise.py: native/random.c's Philox4x32-10 on a counter and key, and a seed's numbers of
 * a stream, so that the test holds C to the known answers and to tests/conformance/noise.json.
 *   noise philox K0 K1 C0 C1 C2 C3   the 4 words, in hex, on one line
 *   noise eps|u SEED COUNT           the first COUNT float32s of the stream, raw, to stdout */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "random.c" /* its static philox too */

int main(int argc, char **argv) {
    if (argc == 8 && !strcmp(argv[1], "philox")) {
        uint32_t c[4];
        for (int i = 0; i < 4; i++) c[i] = (uint32_t)strtoul(argv[4 + i], NULL, 16);
        philox(c, (uint32_t)strtoul(argv[2], NULL, 16), (uint32_t)strtoul(argv[3], NULL, 16));
        printf("%08x %08x %08x %08x\n", c[0], c[1], c[2], c[3]);
        return 0;
    }
    if (argc == 4 && (!strcmp(argv[1], "eps") || !strcmp(argv[1], "u"))) {
        uint64_t seed = strtoull(argv[2], NULL, 10);
        size_t count = strtoul(argv[3], NULL, 10);
        float *out = malloc(count * sizeof *out + 1);
        if (!out) return 1;
        (argv[1][0] == 'e' ? vae_gaussian : vae_uniform)(out, count, seed);
        int ok = fwrite(out, sizeof *out, count, stdout) == count;
        free(out);
        return ok ? 0 : 1;
    }
    fputs("usage: noise philox K0 K1 C0 C1 C2 C3 | noise eps|u SEED COUNT\n", stderr);
    return 2;
}
