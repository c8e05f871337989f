/* Seeded standard normals, as web/src/random.js draws them: xoshiro128** (Blackman and Vigna) seeded through
 * splitmix32, and Box-Muller in double precision, rounded to float. */
#include <math.h>

#include "vae_edge.h"

static uint32_t splitmix32(uint32_t *state) {
    uint32_t t = *state += 0x9e3779b9u;
    t ^= t >> 16;
    t *= 0x21f0aaadu;
    t ^= t >> 15;
    t *= 0x735a2d97u;
    return t ^ (t >> 15);
}

static uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

static uint32_t next(uint32_t s[4]) {
    uint32_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
}

void vae_gaussian(float *out, size_t count, uint64_t seed) {
    const double two32 = 4294967296.0, pi = 3.14159265358979323846;
    uint32_t lo = (uint32_t)seed, hi = (uint32_t)(seed >> 32), s[4];
    for (int i = 0; i < 4; i++) s[i] = splitmix32(&lo) ^ splitmix32(&hi);
    if (!(s[0] | s[1] | s[2] | s[3])) s[0] = 1; /* the all-zero state would stay zero */
    for (size_t i = 0; i < count; i += 2) {
        double u1 = (next(s) + 0.5) / two32, u2 = next(s) / two32; /* u1 in (0, 1): log(u1) is finite */
        double r = sqrt(-2 * log(u1));
        out[i] = (float)(r * cos(2 * pi * u2));
        if (i + 1 < count) out[i + 1] = (float)(r * sin(2 * pi * u2));
    }
}
