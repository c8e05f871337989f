// The noise a seed draws, the same bits as runtime/random.py and native/random.c (docs/noise.md specifies it).
// Philox4x32-10 (Random123) keyed by the seed, counter (block low, block high, stream, round); normals by
// Marsaglia's polar method on 26-bit coordinates with logExact, a log of fixed +, -, *, / steps, so that V8 performs
// the IEEE operations numpy and C perform; uniforms are 24-bit floats. No BigInt: products split into 16-bit halves.

const TWO_32 = 4294967296;
export const EPS = 0, U = 1; // the streams: a sample's normals eps, a learned prior's component choice u

const M0 = 0xd2511f53, M1 = 0xcd9e8d57, W0 = 0x9e3779b9, W1 = 0xbb67ae85; // Philox4x32's constants (Random123)
const ROUNDS = 10;
const COORD_BITS = 26; // a polar coordinate's bits: x^2 + y^2 < 2^51, exact in a double
const HALF = 2 ** (COORD_BITS - 1), S_ONE = 2 ** (2 * COORD_BITS - 2);
const SQRT_HALF = 0.7071067811865476, LN2 = 0.6931471805599453;
const LOG_TERMS = 10; // log's series in t^2 to t^18: the first term left out is below 2^-53 of the sum

const M0_LO = M0 & 0xffff, M0_HI = M0 >>> 16, M1_LO = M1 & 0xffff, M1_HI = M1 >>> 16;

/** The high 32 bits of the 64-bit product of uint32 a and a constant (its 16-bit halves): 16 x 16-bit products. */
function mulhi(a, mLo, mHi) {
  const aLo = a & 0xffff, aHi = a >>> 16, mid1 = aHi * mLo, mid2 = aLo * mHi;
  const carry = (((aLo * mLo) >>> 16) + (mid1 & 0xffff) + (mid2 & 0xffff)) >>> 16;
  return aHi * mHi + (mid1 >>> 16) + (mid2 >>> 16) + carry;
}

/** Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1), uint32s, into out (a Uint32Array of 4). */
function philoxInto(out, k0, k1, c0, c1, c2, c3) {
  for (let r = 0; r < ROUNDS; r++) {
    const hi0 = mulhi(c0, M0_LO, M0_HI), lo0 = Math.imul(c0, M0) >>> 0;
    const hi1 = mulhi(c2, M1_LO, M1_HI), lo1 = Math.imul(c2, M1) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
  return out;
}

/** Philox4x32-10 of counter [c0, c1, c2, c3] under key [k0, k1] (uint32s): its 4 uint32 words. */
export function philox4x32(key, counter) {
  return Array.from(philoxInto(new Uint32Array(4), ...key, ...counter));
}

/** The words of block `block` (an integer below 2^53) of a stream at a round, under a seed's key, into out. */
function blockInto(out, seed, block, stream, round) {
  return philoxInto(out, seed % TWO_32, Math.floor(seed / TWO_32), block % TWO_32, Math.floor(block / TWO_32),
    stream, round);
}

/** log(m 2^e) for m in [0.5, 1) and an integer e, by the steps of runtime/random.py's log_exact. */
export function logExact(m, e) {
  if (m < SQRT_HALF) {
    m *= 2;
    e -= 1;
  }
  const f = m - 1, t = f / (f + 2), t2 = t * t;
  let p = 1 / (2 * LOG_TERMS - 1);
  for (let k = LOG_TERMS - 2; k >= 0; k--) p = p * t2 + 1 / (2 * k + 1);
  return e * LN2 + 2 * t * p;
}

/** The bit length of a positive integer below 2^53. */
function bitLength(s) {
  const high = Math.floor(s / TWO_32);
  return high ? 64 - Math.clz32(high) : 32 - Math.clz32(s);
}

const POW2_NEG = Float64Array.from({ length: 54 }, (_, e) => 2 ** -e);

/** The polar method on two words: writes out[at], out[at + 1] and returns true, or false when the point is dropped. */
function polarPair(wx, wy, out, at) {
  const x = (wx >>> (32 - COORD_BITS)) - HALF, y = (wy >>> (32 - COORD_BITS)) - HALF;
  const s = x * x + y * y; // exact: < 2^51
  if (!(s > 0 && s < S_ONE)) return false;
  const e = bitLength(s), m = s * POW2_NEG[e]; // s = m 2^e, m in [0.5, 1): exact
  const f = Math.sqrt((-2 * logExact(m, e - (2 * COORD_BITS - 2))) / (s * (1 / S_ONE)));
  out[at] = (x * (1 / HALF)) * f;
  out[at + 1] = (y * (1 / HALF)) * f;
  return true;
}

/** `count` standard normal numbers (float32) of stream eps, from number `start`: a slice of one endless draw. */
export function gaussian(count, seed, start = 0) {
  const first = start % 4, out = new Float32Array(first + count + 3), w0 = new Uint32Array(4), w = new Uint32Array(4);
  for (let at = 0, block = (start - first) / 4; at < first + count; at += 4, block++) {
    blockInto(w0, seed, block, EPS, 0);
    for (let h = 0; h < 2; h++) { // pair h: words 2h and 2h + 1, of the next round's block while dropped
      for (let round = 1, use = w0; !polarPair(use[2 * h], use[2 * h + 1], out, at + 2 * h); round++) {
        use = blockInto(w, seed, block, EPS, round);
      }
    }
  }
  return out.slice(first, first + count);
}

/** `count` numbers in [0, 1) (float32) of stream u from number `start`: a word's top 24 bits times 2^-24. */
export function uniform(count, seed, start = 0) {
  const first = start % 4, out = new Float32Array(first + count + 3), w = new Uint32Array(4);
  for (let at = 0, block = (start - first) / 4; at < first + count; at += 4, block++) {
    blockInto(w, seed, block, U, 0);
    for (let j = 0; j < 4; j++) out[at + j] = (w[j] >>> 8) / 16777216; // exact in float32
  }
  return out.slice(first, first + count);
}

/** A fresh seed from the platform's cryptographic random source, for calls that give none. */
export function randomSeed() {
  const [a, b] = globalThis.crypto.getRandomValues(new Uint32Array(2));
  return (a & 0x1fffff) * TWO_32 + b; // 53 bits
}
