/* The noise a seed draws, the same bits as runtime/random.py and web/src/random.js (docs/noise.md specifies it):
 * Philox4x32-10 (Random123) keyed by the seed, counter (block low, block high, stream, round); normals by
 * Marsaglia's polar method on 26-bit coordinates with log_exact, a log of fixed +, -, *, / steps; uniforms from
 * 24 bits. Compile without floating-point contraction (the Makefile's -ffp-contract=off; -std=c99 implies it on
 * GCC): a fused multiply-add would round once where the other languages round twice. */
#include <math.h>

#include "vae_edge.h"

enum { STREAM_EPS = 0, STREAM_U = 1, ROUNDS = 10, COORD_BITS = 26, LOG_TERMS = 10 };

#define HALF ((double)(1 << (COORD_BITS - 1)))
#define S_ONE 1125899906842624.0 /* 2^(2 COORD_BITS - 2): s = 1 as the integer x^2 + y^2 is scaled */
#define SQRT_HALF 0.7071067811865476
#define LN2 0.6931471805599453

/* Philox4x32-10 of counter c under key k, in place. */
static void philox(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t p0 = (uint64_t)0xd2511f53u * c[0], p1 = (uint64_t)0xcd9e8d57u * c[2];
        uint32_t next[4] = {(uint32_t)(p1 >> 32) ^ c[1] ^ k0, (uint32_t)p1, (uint32_t)(p0 >> 32) ^ c[3] ^ k1,
                            (uint32_t)p0};
        for (int i = 0; i < 4; i++) c[i] = next[i];
        k0 += 0x9e3779b9u;
        k1 += 0xbb67ae85u;
    }
}

/* The 4 words of a block (< 2^53) of a stream at a round, under a seed's key (its low and high 32 bits). */
static void block_words(uint32_t w[4], uint64_t seed, uint64_t block, uint32_t stream, uint32_t round) {
    w[0] = (uint32_t)block;
    w[1] = (uint32_t)(block >> 32);
    w[2] = stream;
    w[3] = round;
    philox(w, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* log(m 2^e) for m in [0.5, 1) and an integer e, by the steps of runtime/random.py's log_exact. */
static double log_exact(double m, double e) {
    if (m < SQRT_HALF) {
        m *= 2;
        e -= 1;
    }
    double f = m - 1, t = f / (f + 2), t2 = t * t, p = 1.0 / (2 * LOG_TERMS - 1);
    for (int k = LOG_TERMS - 2; k >= 0; k--) p = p * t2 + 1.0 / (2 * k + 1);
    return e * LN2 + 2 * t * p;
}

/* The polar method on two words: out[0], out[1] and 1, or 0 when the point is dropped. */
static int polar_pair(uint32_t wx, uint32_t wy, float out[2]) {
    double x = (double)(wx >> (32 - COORD_BITS)) - HALF, y = (double)(wy >> (32 - COORD_BITS)) - HALF;
    double s = x * x + y * y; /* exact: < 2^51 */
    if (!(s > 0 && s < S_ONE)) return 0;
    int e;
    double m = frexp(s, &e); /* exact */
    double f = sqrt((-2 * log_exact(m, e - (2 * COORD_BITS - 2))) / (s * (1 / S_ONE)));
    out[0] = (float)((x * (1 / HALF)) * f);
    out[1] = (float)((y * (1 / HALF)) * f);
    return 1;
}

void vae_gaussian_at(float *out, size_t count, uint64_t seed, uint64_t start) {
    for (uint64_t block = start / 4; 4 * block < start + count; block++) {
        uint32_t w0[4], w[4];
        float four[4];
        block_words(w0, seed, block, STREAM_EPS, 0);
        for (int h = 0; h < 2; h++) { /* pair h: words 2h and 2h + 1, of the next round's block while dropped */
            const uint32_t *use = w0;
            for (uint32_t round = 1; !polar_pair(use[2 * h], use[2 * h + 1], four + 2 * h); round++) {
                block_words(w, seed, block, STREAM_EPS, round);
                use = w;
            }
        }
        for (uint64_t j = 4 * block; j < 4 * block + 4; j++)
            if (j >= start && j < start + count) out[j - start] = four[j - 4 * block];
    }
}

void vae_gaussian(float *out, size_t count, uint64_t seed) { vae_gaussian_at(out, count, seed, 0); }

void vae_uniform(float *out, size_t count, uint64_t seed) {
    for (uint64_t block = 0; 4 * block < count; block++) {
        uint32_t w[4];
        block_words(w, seed, block, STREAM_U, 0);
        for (size_t j = 0; j < 4 && 4 * block + j < count; j++)
            out[4 * block + j] = (float)(w[j] >> 8) / 16777216.0f; /* 24 bits: exact in float */
    }
}
