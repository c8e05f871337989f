// The noise a seed draws (docs/noise.md): the known answers every reader reproduces, bit for bit; the draw's
// properties; a VampPrior folder's latents built from it; and the plain SHA-256 used where Web Crypto is missing.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { VAE } from 'vae-edge';
import { gaussian, logExact, philox4x32, uniform } from '../src/random.js';
import { sha256, sha256Plain } from '../src/sha256.js';

const REPO = new URL('../../', import.meta.url);
const KNOWN = JSON.parse(readFileSync(new URL('tests/conformance/noise.json', REPO), 'utf8'));
const BUNDLED = new URL('runtime/models/fashion-mnist', REPO).pathname; // a VampPrior's folder (format 2)
const hex = (words) => Array.from(words, (w) => w.toString(16).padStart(8, '0'));
const bits = (floats) => hex(new Uint32Array(Float32Array.from(floats).buffer));
const freshSeed = () => Math.floor(Math.random() * 2 ** 53);

test("Philox4x32-10 gives Random123's known answers", () => {
  for (const { key, counter, block } of KNOWN.philox4x32_10) {
    assert.deepEqual(hex(philox4x32(key.map((w) => parseInt(w, 16)), counter.map((w) => parseInt(w, 16)))), block);
  }
});

test("each seed draws the known numbers of each stream, bit for bit (tests/conformance/noise.json)", () => {
  for (const { seed, eps, u } of KNOWN.seeds) {
    assert.deepEqual(bits(gaussian(eps.length, seed)), eps, `eps of seed ${seed}`);
    assert.deepEqual(bits(uniform(u.length, seed)), u, `u of seed ${seed}`);
  }
});

test('any range of a stream is the slice of one long draw, odd starts and lengths included', () => {
  const seed = freshSeed(), long = gaussian(1000, seed), longU = uniform(100, seed);
  for (const [start, n] of [[0, 1], [1, 2], [3, 7], [5, 500], [998, 2]]) {
    assert.deepEqual(gaussian(n, seed, start), long.subarray(start, start + n), `eps ${start}, ${n}`);
  }
  for (const [start, n] of [[0, 1], [2, 5], [7, 93]]) assert.deepEqual(uniform(n, seed, start), longU.subarray(start, start + n));
});

test('another seed draws other numbers, seeds past 2^32 included', () => {
  assert.notDeepEqual(gaussian(20, 2 ** 40 + 5), gaussian(20, 5));
  assert.notDeepEqual(gaussian(20, 2 ** 32), gaussian(20, 0));
  assert.notDeepEqual(uniform(20, 1), uniform(20, 0));
});

test('logExact is within 2 ulp of Math.log', () => {
  for (let i = 0; i < 100_000; i++) {
    // the reference is log1p(m - 1), m - 1 exact: V8's Math.log is itself 1 ulp off for some m (0.6805093134521055)
    const m = 0.5 + Math.random() / 2, e = -Math.floor(Math.random() * 60), want = Math.log1p(m - 1) + e * Math.LN2;
    const ulp = 2 ** (Math.floor(Math.log2(Math.abs(want) || 1e-300)) - 52);
    assert.ok(Math.abs(logExact(m, e) - want) <= 2 * ulp + Math.abs(e) * 2 ** -53, `log(${m} 2^${e})`);
  }
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

test('the two numbers of a polar pair are independent: uncorrelated, and their squares too', () => {
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

test('the uniforms are 24-bit multiples in [0, 1), evenly spread', () => {
  const u = uniform(100_000, 3);
  assert.ok(u.every((v) => v >= 0 && v < 1 && Number.isInteger(v * 2 ** 24)));
  const counts = new Array(10).fill(0);
  for (const v of u) counts[Math.floor(v * 10)]++;
  assert.ok(counts.every((c) => Math.abs(c - 10_000) < 500), `deciles ${counts}`);
});

test("a VampPrior folder's latents are fromNoise(temperature * gaussian, uniform): temperature scales eps, never u", async () => {
  const vae = await VAE.load(BUNDLED, { decoderOnly: true }), n = 6, d = vae.latentDim;
  assert.equal(vae.prior, 'vamp');
  for (const temperature of [0.5, 1.7]) {
    const seed = freshSeed(), eps = gaussian(n * d, seed).map((v) => v * temperature);
    assert.deepEqual(await vae.latents(n, { seed, temperature }), await vae.fromNoise(eps, uniform(n, seed), n));
  }
});

test('the plain SHA-256 equals node:crypto, across block boundaries', async () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 100_003]) {
    const bytes = new Uint8Array(randomBytes(n));
    const want = createHash('sha256').update(bytes).digest('hex');
    assert.equal(sha256Plain(bytes), want, `${n} bytes`);
    assert.equal(await sha256(bytes), want, `${n} bytes, Web Crypto`);
  }
});
