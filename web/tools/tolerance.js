// How close the library's outputs must come to the Python runtime's. Float32: within 1e-5 (max abs). Int8: the
// rule of tests/int8_tolerance.py, which tests/test_web.py writes beside the Python runtime's int8 outputs
// (int8/tolerance.json): float rounding in another order (WebAssembly kernels, threads) moves a value across an
// 8-bit rounding boundary now and then, so a mean and a share of values bound it, not the largest difference.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const TOL = 1e-5;

/** null when `got` is close enough to `want` (a Float32Array-like), else one line saying how far off it is.
 * `rule` is an int8/tolerance.json ({mean: {mu, x}, off, by}) or undefined for float32; `output` is 'mu' or 'x'. */
export function difference(got, want, rule, output) {
  if (got.length !== want.length) return `${got.length} numbers, expected ${want.length}`;
  let worst = 0, sum = 0, off = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    worst = Math.max(worst, d);
    sum += d;
    if (d > (rule ? rule.by : TOL)) off++;
  }
  if (!rule) return worst <= TOL ? null : `max abs difference ${worst} > ${TOL}`;
  const mean = sum / got.length, share = off / got.length;
  if (mean <= rule.mean[output] && share <= rule.off) return null;
  return `int8: mean ${mean.toExponential(2)} (bound ${rule.mean[output]}), max ${worst.toExponential(2)}, ` +
    `${(100 * share).toFixed(2)}% off by > ${rule.by} (bound ${100 * rule.off}%)`;
}

/** The int8 rule saved in a reference precision folder (int8/tolerance.json), or undefined for float32. */
export function ruleIn(folder) {
  const file = path.join(folder, 'tolerance.json');
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : undefined;
}
