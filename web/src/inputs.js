// The caller's input, checked before any work (as runtime/inputs.py): images x, latents z, counts, the temperature
// and the seed. Each bad value is a RuntimeInputError of one line; tests/conformance/ holds the shared rules.

import { message, RuntimeInputError, show } from './errors.js';
import { RULES } from './format_rules.js';
import { randomSeed } from './random.js';

// A count per call (sample's n, interpolate's steps, batchSize): at most 2^20, so that what it allocates is
// bounded and a huge count is the caller's error in words, not a RangeError from an array.
export const MAX_COUNT = RULES.limits.count;

export function checkCount(n, what) {
  if (!Number.isInteger(n)) throw new RuntimeInputError(message('count_integer', { what, got: show(n) }));
  if (n <= 0) throw new RuntimeInputError(message('count_positive', { what, count: n }));
  if (n > MAX_COUNT) throw new RuntimeInputError(message('count_limit', { what, limit: MAX_COUNT, count: n }));
  return n;
}

export function checkTemperature(t) {
  if (typeof t !== 'number' || !Number.isFinite(t) || t < 0) {
    throw new RuntimeInputError(message('temperature', { temperature: show(t) }));
  }
  return t;
}

/** undefined or null (a fresh seed) or an integer in [0, 2^53). */
export function checkSeed(seed) {
  if (seed === undefined || seed === null) return randomSeed();
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RuntimeInputError(message('seed', { seed: show(seed) }));
  }
  return seed;
}

/** A Float32Array from a typed array, an array of numbers, or an array of rows (each `row` numbers long). */
function toFloat32(v, what, row, rowText) {
  if (v instanceof Float32Array) return v;
  if (ArrayBuffer.isView(v) && !(v instanceof DataView) && typeof v[0] !== 'bigint') return Float32Array.from(v);
  if (!Array.isArray(v)) {
    throw new RuntimeInputError(`${what} must be a Float32Array, an array of numbers or an array of rows, got ${show(v)}`);
  }
  if (v.length > 0 && (Array.isArray(v[0]) || ArrayBuffer.isView(v[0]))) {
    const out = new Float32Array(v.length * row);
    v.forEach((r, i) => {
      if (!(Array.isArray(r) || ArrayBuffer.isView(r)) || r.length !== row) {
        throw new RuntimeInputError(`${what}[${i}] has ${Array.isArray(r) || ArrayBuffer.isView(r) ? r.length : show(r)} ` +
          `numbers; each row holds ${row} (${rowText})`);
      }
      out.set(r, i * row);
    });
    return out;
  }
  if (!v.every((x) => typeof x === 'number')) throw new RuntimeInputError(`${what} must hold only numbers`);
  return Float32Array.from(v);
}

function checkLength(length, n, row, what, rows) {
  if (length === 0) throw new RuntimeInputError(`${what} is empty`);
  if (length % row !== 0) {
    throw new RuntimeInputError(`${what} has ${length} numbers; expected a multiple of ${row} (${rows})`);
  }
  if (n !== undefined) {
    checkCount(n, 'n');
    if (n * row !== length) throw new RuntimeInputError(`${what} has ${length} numbers but n is ${n}: expected ${n * row} (${rows})`);
  }
}

/** Latents z (n x latent numbers, finite) as a Float32Array. */
export function latents(z, n, latent) {
  z = toFloat32(z, 'z', latent, `latent_dim ${latent}`);
  checkLength(z.length, n, latent, 'z', `latent vectors of latent_dim ${latent}`);
  if (!z.every(Number.isFinite)) throw new RuntimeInputError('z contains NaN or inf');
  return z;
}

/** Images x (floats in [0, 1], or a Uint8Array of 0..255) of shape [C, H, W] as floats in [0, 1]. */
export function images(x, n, shape, what = 'x') {
  const [c, h, w] = shape, d = c * h * w;
  const bytes = x instanceof Uint8Array || x instanceof Uint8ClampedArray;
  const data = bytes ? x : toFloat32(x, what, d, `C x H x W = ${c}x${h}x${w}`);
  checkLength(data.length, n, d, what, `images of ${c}x${h}x${w} = ${d} pixels`);
  if (bytes) return Float32Array.from(data, (v) => v / 255);
  let lo = Infinity, hi = -Infinity;
  for (const v of data) {
    if (!Number.isFinite(v)) throw new RuntimeInputError(`${what} contains NaN or inf`);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo < 0 || hi > 1) {
    throw new RuntimeInputError(`${what} has values in [${lo}, ${hi}]; floats must lie in [0, 1] (or pass a Uint8Array of 0..255)`);
  }
  return data;
}
