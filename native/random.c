/* Seeded random numbers, as web/src/random.js draws them: xoshiro128** (Blackman and Vigna) seeded through
 * splitmix32; standard normals by Box-Muller in double precision, rounded to float; uniforms from 24 bits. */
#include <math.h>

#include "vae_edge.h"

#define UNIFORM_STREAM 0x5bd1e995u /* uniform's stream, apart from gaussian's (stream 0) */

static uint32_t splitmix32(uint32_t *state) {
    uint32_t t = *state += 0x9e3779b9u;
    t ^= t >> 16;
    t *= 0x21f0aaadu;
    t ^= t >> 15;
    t *= 0x735a2d97u;
    return t ^ (t >> 15);
}

static uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

/* xoshiro128**'s state for a seed (< 2^53) and a stream: the low 32 bits of the seed, xored with the stream, and
 * the high bits each seed a splitmix32. */
static void seed_state(uint32_t s[4], uint64_t seed, uint32_t stream) {
    uint32_t lo = (uint32_t)seed ^ stream, hi = (uint32_t)(seed >> 32);
    for (int i = 0; i < 4; i++) s[i] = splitmix32(&lo) ^ splitmix32(&hi);
    if (!(s[0] | s[1] | s[2] | s[3])) s[0] = 1; /* the all-zero state would stay zero */
}

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
    uint32_t s[4];
    seed_state(s, seed, 0);
    for (size_t i = 0; i < count; i += 2) {
        double u1 = (next(s) + 0.5) / two32, u2 = next(s) / two32; /* u1 in (0, 1): log(u1) is finite */
        double r = sqrt(-2 * log(u1));
        out[i] = (float)(r * cos(2 * pi * u2));
        if (i + 1 < count) out[i + 1] = (float)(r * sin(2 * pi * u2));
    }
}

void vae_uniform(float *out, size_t count, uint64_t seed) {
    uint32_t s[4];
    seed_state(s, seed, UNIFORM_STREAM);
    for (size_t i = 0; i < count; i++) out[i] = (float)(next(s) >> 8) / 16777216.0f; /* 24 bits: exact in float */
}
