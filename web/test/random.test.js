// The seeded generator behind sample(), and the plain SHA-256 used where Web Crypto is missing.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { gaussian, xoshiro128 } from '../src/random.js';
import { sha256, sha256Plain } from '../src/sha256.js';

test('the same seed gives the same numbers, another seed others', () => {
  assert.deepEqual(gaussian(1001, 42), gaussian(1001, 42));
  assert.notDeepEqual(gaussian(1001, 42), gaussian(1001, 43));
});

test('a short draw is the start of a longer one, odd lengths included', () => {
  const long = gaussian(1000, 9);
  for (const n of [1, 2, 7, 500]) assert.deepEqual(gaussian(n, 9), long.subarray(0, n));
});

test('seeds past 2^32 are their own seeds', () => {
  assert.notDeepEqual(gaussian(20, 2 ** 40 + 5), gaussian(20, 5));
  assert.deepEqual(gaussian(20, Number.MAX_SAFE_INTEGER), gaussian(20, Number.MAX_SAFE_INTEGER));
});

test('xoshiro128** gives well-spread 32-bit words', () => {
  const next = xoshiro128(1), seen = new Set();
  let high = 0;
  for (let i = 0; i < 100_000; i++) {
    const v = next();
    assert.ok(Number.isInteger(v) && v >= 0 && v < 2 ** 32);
    seen.add(v);
    high += v >= 2 ** 31;
  }
  assert.ok(seen.size > 99_990, `${seen.size} distinct words of 100000`);
  assert.ok(Math.abs(high / 100_000 - 0.5) < 0.01, `top bit set in ${high} of 100000`);
});

test('the numbers are standard normal: mean, variance, tails', () => {
  for (const seed of [0, 1, 123456789]) {
    const x = gaussian(200_000, seed);
    const mean = x.reduce((a, b) => a + b) / x.length;
    const variance = x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length;
    const beyond2 = x.filter((v) => Math.abs(v) > 2).length / x.length; // 4.55% for N(0, 1)
    assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
    assert.ok(Math.abs(variance - 1) < 0.015, `variance ${variance}`);
    assert.ok(Math.abs(beyond2 - 0.0455) < 0.003, `P(|x| > 2) = ${beyond2}`);
    assert.ok(x.every(Number.isFinite));
  }
});

test('the two numbers of a Box-Muller pair are independent: uncorrelated, and their squares too', () => {
  const x = gaussian(200_000, 11), n = x.length / 2;
  const corr = (f) => {
    let sa = 0, sb = 0, sab = 0, saa = 0, sbb = 0;
    for (let i = 0; i < n; i++) {
      const a = f(x[2 * i]), b = f(x[2 * i + 1]);
      sa += a; sb += b; sab += a * b; saa += a * a; sbb += b * b;
    }
    return (sab / n - (sa / n) * (sb / n)) / Math.sqrt((saa / n - (sa / n) ** 2) * (sbb / n - (sb / n) ** 2));
  };
  assert.ok(Math.abs(corr((v) => v)) < 0.01, `corr(x0, x1) = ${corr((v) => v)}`);
  assert.ok(Math.abs(corr((v) => v * v)) < 0.01, `corr(x0^2, x1^2) = ${corr((v) => v * v)}`);
});

test('the plain SHA-256 equals node:crypto, across block boundaries', async () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 100_003]) {
    const bytes = new Uint8Array(randomBytes(n));
    const want = createHash('sha256').update(bytes).digest('hex');
    assert.equal(sha256Plain(bytes), want, `${n} bytes`);
    assert.equal(await sha256(bytes), want, `${n} bytes, Web Crypto`);
  }
});
