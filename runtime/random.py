"""The noise a seed draws, the same bits in Python, JavaScript (web/src/random.js) and C (native/random.c):
docs/noise.md specifies it.

Philox4x32-10 (Random123) keyed by the seed, the counter (block low, block high, stream, round): the numbers of
each stream are pure functions of (seed, stream, index), so numpy computes a batch at once and any range alone.
Normals by Marsaglia's polar method on 26-bit coordinates, with a log of fixed +, -, *, / steps (log_exact), so
that every language performs the same IEEE operations; uniforms are 24-bit floats.
"""
from __future__ import annotations

import secrets

import numpy as np

EPS, U = 0, 1  # the streams: a sample's normals eps, a learned prior's component choice u

M0, M1 = 0xD2511F53, 0xCD9E8D57  # Philox4x32's multipliers and key increments (Random123)
W0, W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10
MASK = 0xFFFFFFFF
SEED_LIMIT = 2 ** 53

COORD_BITS = 26  # a polar coordinate's bits: x^2 + y^2 < 2^51, exact in a double
HALF = 1 << (COORD_BITS - 1)
S_ONE = 1 << (2 * COORD_BITS - 2)  # s = 1 as the integer x^2 + y^2 is scaled
SQRT_HALF = 0.7071067811865476
LN2 = 0.6931471805599453
LOG_TERMS = 10  # log's series in t^2 to t^18: the first term left out is below 2^-53 of the sum


def fresh_seed() -> int:
    """A seed in [0, 2^53) from the operating system, for calls that give none."""
    return secrets.randbits(53)


def philox(seed: int, c0, c1, c2, c3) -> tuple[np.ndarray, ...]:
    """Philox4x32-10 of counter words (uint32 values in arrays or ints) under key (seed low, seed high): 4 words."""
    k0, k1 = seed & MASK, (seed >> 32) & MASK
    c = [np.asarray(w, np.uint64) for w in (c0, c1, c2, c3)]
    for _ in range(ROUNDS):
        p0, p1 = c[0] * np.uint64(M0), c[2] * np.uint64(M1)  # 32 x 32 -> 64 bits: exact in uint64
        hi0, hi1 = p0 >> np.uint64(32), p1 >> np.uint64(32)
        hi1 ^= c[1]
        hi1 ^= np.uint64(k0)
        hi0 ^= c[3]
        hi0 ^= np.uint64(k1)
        p0 &= np.uint64(MASK)
        p1 &= np.uint64(MASK)
        c = [hi1, p1, hi0, p0]
        k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
    return tuple(c)


def log_exact(m: np.ndarray, e: np.ndarray) -> np.ndarray:
    """log(m 2^e) for m in [0.5, 1) and integer e (float64 arrays), by the same IEEE double steps in every language:
    m moved into [sqrt(1/2), sqrt(2)), then log m = 2 atanh(t), t = (m - 1) / (m + 1), by Horner in t^2."""
    low = m < SQRT_HALF
    m = np.where(low, m * 2.0, m)
    e = np.where(low, e - 1.0, e)
    f = m - 1.0
    t = f / (f + 2.0)
    t2 = t * t
    p = t2 * (1.0 / (2 * LOG_TERMS - 1))
    for k in range(LOG_TERMS - 2, 0, -1):
        p += 1.0 / (2 * k + 1)
        p *= t2
    p += 1.0
    e *= LN2
    t *= 2.0
    t *= p
    e += t
    return e


def _normal_pairs(w_x: np.ndarray, w_y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Marsaglia's polar method on words w_x, w_y: the two normals (float32) and whether the point was kept."""
    x = (w_x >> np.uint64(32 - COORD_BITS)).astype(np.float64) - HALF  # exact integers in [-2^25, 2^25)
    y = (w_y >> np.uint64(32 - COORD_BITS)).astype(np.float64) - HALF
    s = x * x + y * y  # exact: < 2^51
    kept = (s > 0) & (s < S_ONE)
    s[~kept] = S_ONE / 2  # a harmless stand-in, dropped below
    m, e = np.frexp(s)
    f = log_exact(m, e - (2.0 * COORD_BITS - 2))
    f *= -2.0
    f /= s * (1.0 / S_ONE)
    np.sqrt(f, out=f)
    x *= 1.0 / HALF
    y *= 1.0 / HALF
    x *= f
    y *= f
    return x.astype(np.float32), y.astype(np.float32), kept


def _polar(seed: int, stream: int, blocks: np.ndarray) -> np.ndarray:
    """The 4 normals of each block (a uint64 index array): pair h (0, 1) of a block takes words 2h, 2h+1 of the
    block at round 0, 1, 2, ... until the point (x, y) falls inside the unit circle, its centre excluded."""
    n = len(blocks)
    out = np.empty((n, 2, 2), np.float32)
    w = np.stack(philox(seed, blocks & np.uint64(MASK), blocks >> np.uint64(32), stream, 0), axis=1)
    x, y, kept = _normal_pairs(w[:, 0::2].reshape(-1), w[:, 1::2].reshape(-1))
    out[..., 0].flat, out[..., 1].flat = x, y
    todo = np.flatnonzero(~kept)  # pairs (2 block + h) still to draw: about 21 in 100
    r = 1
    while todo.size:
        b = blocks[todo >> 1]
        w = philox(seed, b & np.uint64(MASK), b >> np.uint64(32), stream, r)
        h = (todo & 1).astype(bool)
        x, y, kept = _normal_pairs(np.where(h, w[2], w[0]), np.where(h, w[3], w[1]))
        done = todo[kept]
        out[done >> 1, done & 1, 0], out[done >> 1, done & 1, 1] = x[kept], y[kept]
        todo = todo[~kept]
        r += 1
    return out.reshape(n, 4)


def gaussian_runs(seed: int, starts, count: int, stream: int = EPS) -> np.ndarray:
    """Normals starts[i] .. starts[i] + count - 1 of a stream, one row each: (len(starts), count) float32."""
    starts = np.asarray(starts, np.int64).reshape(-1)
    offset = starts & 3
    width = (3 + count + 3) // 4  # blocks that cover count numbers from any offset
    blocks = (starts >> 2)[:, None] + np.arange(width)
    flat = _polar(seed, stream, blocks.reshape(-1).astype(np.uint64)).reshape(len(starts), 4 * width)
    return flat[np.arange(len(starts))[:, None], offset[:, None] + np.arange(count)]


def gaussian(count: int, seed: int, start: int = 0) -> np.ndarray:
    """count standard normal float32s of stream eps from number `start`: a slice of one endless draw."""
    return gaussian_runs(seed, [start], count)[0]


def uniform(count: int, seed: int, start: int = 0) -> np.ndarray:
    """count float32s in [0, 1) of stream u from number `start`: the top 24 bits of a word, times 2^-24."""
    i = np.arange(start, start + count, dtype=np.uint64)
    blocks = i >> np.uint64(2)
    words = np.stack(philox(seed, blocks & np.uint64(MASK), blocks >> np.uint64(32), U, 0), axis=-1)
    return ((words[np.arange(count), (i & np.uint64(3)).astype(np.int64)] >> np.uint64(8)).astype(np.float32)
            * np.float32(2.0 ** -24))


def scaled(eps: np.ndarray, temperature: float) -> np.ndarray:
    """temperature * eps as every reader computes it: the product in double, rounded to float32."""
    return (eps.astype(np.float64) * float(temperature)).astype(np.float32)
