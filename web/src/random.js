// Seeded normal numbers for sampling: the same seed gives the same numbers on every machine and in every
// browser. xoshiro128** (Blackman and Vigna) seeded through splitmix32, and Box-Muller for the normals.
// It is not numpy's default_rng (PCG64 + ziggurat), so a seed gives other samples here than in Python.

const TWO_32 = 4294967296;

function splitmix32(state) {
  return () => {
    state = (state + 0x9e3779b9) | 0;
    let t = state ^ (state >>> 16);
    t = Math.imul(t, 0x21f0aaad);
    t ^= t >>> 15;
    t = Math.imul(t, 0x735a2d97);
    return (t ^ (t >>> 15)) >>> 0;
  };
}

/** A generator of uniform uint32s from a seed (an integer in [0, 2^53)); another stream gives other numbers. */
export function xoshiro128(seed, stream = 0) {
  const lo = splitmix32(stream ? (seed % TWO_32) ^ stream : seed % TWO_32), hi = splitmix32(Math.floor(seed / TWO_32));
  const s = new Uint32Array(4).map(() => lo() ^ hi());
  if (!(s[0] | s[1] | s[2] | s[3])) s[0] = 1; // the all-zero state would stay zero
  return () => {
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  };
}

function rotl(x, k) {
  return (x << k) | (x >>> (32 - k));
}

/** A fresh seed from the platform's cryptographic random source, for calls that give none. */
export function randomSeed() {
  const [a, b] = globalThis.crypto.getRandomValues(new Uint32Array(2));
  return (a & 0x1fffff) * TWO_32 + b; // 53 bits
}

/** `count` standard normal numbers (float32) drawn in order from `seed`: a prefix of a longer draw. */
export function gaussian(count, seed) {
  const next = xoshiro128(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const u1 = (next() + 0.5) / TWO_32; // in (0, 1): log(u1) is finite
    const u2 = next() / TWO_32;
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < count) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** `count` uniform numbers in [0, 1) (float32) drawn in order from `seed`, on a stream apart from gaussian's. */
export function uniform(count, seed) {
  const next = xoshiro128(seed, 0x5bd1e995);
  return Float32Array.from({ length: count }, () => (next() >>> 8) / 16777216); // 24 bits: exact in float32
}
