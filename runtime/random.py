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

COORD_BITS = 26  # a polar coordinate's bits: x^2 + y^2 < 2^51, exact in a double
HALF = 1 << (COORD_BITS - 1)
S_ONE = 1 << (2 * COORD_BITS - 2)  # s = 1 as the integer x^2 + y^2 is scaled
SQRT_HALF = 0.7071067811865476
LN2 = 0.6931471805599453
LOG_TERMS = 10  # log's series in t^2 to t^18: the first term left out is below 2^-53 of the sum
_M0, _M1, _MASK, _32 = np.uint64(M0), np.uint64(M1), np.uint64(MASK), np.uint64(32)
_COORD_SHIFT = np.uint64(32 - COORD_BITS)


def fresh_seed() -> int:
    """A seed in [0, 2^53) from the operating system, for calls that give none."""
    return secrets.randbits(53)


def philox(seed: int, c0, c1, c2, c3) -> tuple[np.ndarray, ...]:
    """Philox4x32-10 of counter words (uint32 values in arrays or ints) under key (seed low, seed high): 4 words.
    In place on four uint64 arrays (the 32 x 32 -> 64-bit products are exact): allocations cost as much as the
    arithmetic here."""
    k0, k1 = seed & MASK, (seed >> 32) & MASK
    n = max(np.size(w) for w in (c0, c1, c2, c3))
    c = [np.broadcast_to(np.asarray(w, np.uint64), (n,)).copy() for w in (c0, c1, c2, c3)]
    p0, p1 = np.empty(n, np.uint64), np.empty(n, np.uint64)
    for _ in range(ROUNDS):
        np.multiply(c[0], _M0, out=p0)
        np.multiply(c[2], _M1, out=p1)
        hi1, lo1, hi0, lo0 = c  # the new words overwrite the old ones as each old one is used up
        np.right_shift(p1, _32, out=hi1)
        hi1 ^= lo1
        hi1 ^= np.uint64(k0)
        np.right_shift(p0, _32, out=hi0)
        hi0 ^= lo0
        hi0 ^= np.uint64(k1)
        np.bitwise_and(p1, _MASK, out=lo1)
        np.bitwise_and(p0, _MASK, out=lo0)
        k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
    return tuple(c)


def log_exact(m: np.ndarray, e: np.ndarray) -> np.ndarray:
    """log(m 2^e) for m in [0.5, 1) and integer e (float64 arrays), by the same IEEE double steps in every language:
    m moved into [sqrt(1/2), sqrt(2)), then log m = 2 atanh(t), t = (m - 1) / (m + 1), by Horner in t^2.
    Works in place on m and e."""
    low = m < SQRT_HALF
    np.multiply(m, 2.0, out=m, where=low)
    np.subtract(e, 1.0, out=e, where=low)
    m -= 1.0  # f
    t = m + 2.0
    np.divide(m, t, out=t)
    t2 = np.multiply(t, t, out=m)
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
    x = (w_x >> _COORD_SHIFT).astype(np.float64)
    x -= HALF  # exact integers in [-2^25, 2^25)
    y = (w_y >> _COORD_SHIFT).astype(np.float64)
    y -= HALF
    s = x * x
    s += y * y  # exact: < 2^51
    kept = (s > 0) & (s < S_ONE)
    np.copyto(s, S_ONE / 2, where=~kept)  # a harmless stand-in, dropped by the caller
    m, e = np.frexp(s)
    f = log_exact(m, e.astype(np.float64) - (2 * COORD_BITS - 2))
    f *= -2.0
    s *= 1.0 / S_ONE
    f /= s
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
    out = np.empty((n, 4), np.float32)
    w = philox(seed, blocks & np.uint64(MASK), blocks >> np.uint64(32), stream, 0)
    x, y, kept = _normal_pairs(np.concatenate([w[0], w[2]]), np.concatenate([w[1], w[3]]))
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = x[:n], y[:n], x[n:], y[n:]
    todo = np.flatnonzero(~kept)  # pairs h n + i still to draw: about 21 in 100
    first = 1
    while todo.size:
        # Several rounds a pass (each number is a pure function of its round, so any grouping gives the same
        # numbers): 2 while many pairs remain, then 5, which leaves one pair in about 2,000 for another pass.
        rounds = 2 if todo.size > 1000 else 5
        r = np.repeat(np.arange(first, first + rounds, dtype=np.uint64), todo.size)
        b = np.tile(blocks[todo % n], rounds)
        w = philox(seed, b & np.uint64(MASK), b >> np.uint64(32), stream, r)
        h = np.tile(todo >= n, rounds)
        x, y, kept = _normal_pairs(np.where(h, w[2], w[0]), np.where(h, w[3], w[1]))
        kept = kept.reshape(rounds, todo.size)
        found = kept.any(0)
        at = kept.argmax(0) * todo.size + np.arange(todo.size)  # each pair's first kept round in this pass
        done, at = todo[found], at[found]
        out[done % n, 2 * (done // n)], out[done % n, 2 * (done // n) + 1] = x[at], y[at]
        todo = todo[~found]
        first += rounds
    return out


def gaussian_runs(seed: int, starts, count: int, stream: int = EPS) -> np.ndarray:
    """Normals starts[i] .. starts[i] + count - 1 of a stream, one row each: (len(starts), count) float32."""
    starts = np.asarray(starts, np.int64).reshape(-1)
    offset = starts & 3
    width = (3 + count + 3) // 4  # blocks that cover count numbers from any offset
    blocks = (starts >> 2)[:, None] + np.arange(width)
    flat = _polar(seed, stream, blocks.reshape(-1).astype(np.uint64)).reshape(len(starts), 4 * width)
    if np.all(offset == offset[0]):  # the usual case, a slice (a gather costs as much as the draw)
        return flat[:, offset[0]:offset[0] + count]
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
    if temperature == 1:
        return eps  # exactly what the product gives
    return (eps.astype(np.float64) * float(temperature)).astype(np.float32)
