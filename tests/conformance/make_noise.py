"""Writes noise.json: the known answers of docs/noise.md that every reader reproduces bit for bit.

    python tests/conformance/make_noise.py

The numbers come from the plain, one-number-at-a-time reading of docs/noise.md below (Python integers and floats,
no numpy), not from runtime/random.py, so that the vectorised readers are held to an independent computation.
Random123's own known answers for Philox4x32-10 come first, copied from its kat_vectors.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

OUT = Path(__file__).resolve().parent / "noise.json"
SEEDS = [0, 1, 2 ** 32, 2 ** 53 - 1]
EPS_COUNT, U_COUNT = 64, 16  # 64 normals: 32 pairs, some of which take a second or third round
RANDOM123 = [  # kat_vectors: key, counter, the block
    ([0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000],
     [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
    ([0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
     [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
    ([0xa4093822, 0x299f31d0], [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
     [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]),
]


def philox(key: list[int], counter: list[int]) -> list[int]:
    (k0, k1), (c0, c1, c2, c3) = key, counter
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c3 ^ k1, p0 & 0xFFFFFFFF
        k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return [c0, c1, c2, c3]


def block(seed: int, b: int, stream: int, r: int) -> list[int]:
    return philox([seed & 0xFFFFFFFF, seed >> 32], [b & 0xFFFFFFFF, b >> 32, stream, r])


def log_exact(m: float, e: int) -> float:
    if m < 0.7071067811865476:
        m, e = m * 2, e - 1
    f = m - 1
    t = f / (f + 2)
    t2 = t * t
    p = 1 / 19
    for c in (17, 15, 13, 11, 9, 7, 5, 3, 1):
        p = p * t2 + 1 / c
    return e * 0.6931471805599453 + 2 * t * p


def float32_bits(x: float) -> str:
    return struct.pack(">f", x).hex()


def normals(seed: int, count: int) -> list[str]:
    out = []
    for b in range((count + 3) // 4):
        for h in range(2):
            r = 0
            while True:
                w = block(seed, b, 0, r)
                x, y = (w[2 * h] >> 6) - 2 ** 25, (w[2 * h + 1] >> 6) - 2 ** 25
                s = x * x + y * y  # Python integers: exact
                if 0 < s < 2 ** 50:
                    break
                r += 1
            m, e = math.frexp(float(s))
            g = math.sqrt(-2 * log_exact(m, e - 50) / (s * 2.0 ** -50))
            out += [float32_bits(x * 2.0 ** -25 * g), float32_bits(y * 2.0 ** -25 * g)]
    return out[:count]


def uniforms(seed: int, count: int) -> list[str]:
    return [float32_bits((block(seed, i // 4, 1, 0)[i % 4] >> 8) * 2.0 ** -24) for i in range(count)]


def main() -> None:
    for key, counter, words in RANDOM123:
        assert philox(key, counter) == words, "Philox4x32-10 disagrees with Random123's known answers"
    hexes = lambda ws: [f"{w:08x}" for w in ws]  # noqa: E731
    philox_rows = [{"key": hexes(k), "counter": hexes(c), "block": hexes(w)} for k, c, w in RANDOM123]
    seed_rows = [{"seed": s, "eps": normals(s, EPS_COUNT), "u": uniforms(s, U_COUNT)} for s in SEEDS]
    rows = lambda items: ",\n  ".join(json.dumps(i) for i in items)  # noqa: E731  one row a line
    OUT.write_text('{"format": "vae-edge-noise", "version": 1, "spec": "docs/noise.md",\n'
                   f' "philox4x32_10": [\n  {rows(philox_rows)}],\n "seeds": [\n  {rows(seed_rows)}]}}\n')


if __name__ == "__main__":
    main()
