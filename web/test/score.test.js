// vae.score (issue 33) on the bundled format-2 folder: the Python runtime's scores for the same images and the same
// explicit noise, and for the same seed with the noise drawn here (so the order of draws is Python's); binarized
// pixels, bits per dimension, and a folder or an argument that is refused in one line.

import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, test } from 'node:test';
import { ModelFolderError, RuntimeInputError, VAE } from 'vae-edge';
import { loadNpy } from '../tools/npy.js';

const ROOT = process.env.VAE_EDGE_REFERENCE;
if (!ROOT) throw new Error('VAE_EDGE_REFERENCE is not set: run pytest tests/test_web.py, which saves the Python scores');
const BUNDLED = new URL('../../runtime/models/fashion-mnist', import.meta.url).pathname;
const REF = path.join(ROOT, 'score');
const ref = (key) => loadNpy(path.join(REF, `${key}.npy`));
const { k, seed } = JSON.parse(readFileSync(path.join(REF, 'score.json'), 'utf8'));
// log w is float32 from onnxruntime, whose kernels may differ between Python's and Node's builds: the decoders'
// fp32 tolerance, 1e-5, on each of the C H W + latent_dim terms log w sums (8.2e-3 nats here; measured: 0).
const tolerance = (vae) => 1e-5 * (vae.inputShape.reduce((a, b) => a * b) + vae.latentDim);

function assertClose(got, want, tol, what) {
  assert.equal(got.length, want.length, `${what}: ${got.length} scores, expected ${want.length}`);
  const worst = Math.max(...got.map((g, i) => Math.abs(g - want[i])));
  assert.ok(worst <= tol, `${what}: max abs difference ${worst} nats > ${tol}`);
}

let vae;
before(async () => { vae = await VAE.load(BUNDLED); });

test("score(x, {k, eps}) gives the Python runtime's scores for the same images and noise", async () => {
  assertClose(await vae.score(ref('x').data, { k, eps: ref('eps').data }), ref('nats_eps').data, tolerance(vae), 'eps');
});

test("score(x, {k, seed}) draws the Python runtime's noise: the same scores for the same seed", async () => {
  assertClose(await vae.score(ref('x').data, { k, seed }), ref('nats_seed').data, tolerance(vae), `seed ${seed}`);
});

test("an image's score depends on its own noise alone: the seed's image i sample s is normals (i k + s) d ..", async () => {
  const x = ref('x').data, d = vae.inputShape.reduce((a, b) => a * b);
  const all = await vae.score(x, { k, seed });
  assert.deepEqual(await vae.score(x.subarray(0, 2 * d), { k, seed }), all.subarray(0, 2));
});

test('start: a set scored in chunks gets the scores of the whole set (image i draws image start + i\'s noise)', async () => {
  const x = ref('x').data, d = vae.inputShape.reduce((a, b) => a * b);
  const all = await vae.score(x, { k, seed });
  assert.deepEqual(await vae.score(x.subarray(2 * d), { k, seed, start: 2 }), all.subarray(2));
  await assert.rejects(vae.score(x, { start: -1 }), (e) => e instanceof RuntimeInputError && e.message === 'start must be an integer >= 0, got -1');
});

test('a binarized model scores a grey image as its binarization at 0.5', async () => {
  assert.equal(vae.meta.recipe.binarize, true);
  const grey = Float32Array.from({ length: 2 * 784 }, () => Math.random());
  const bits = grey.map((v) => (v >= 0.5 ? 1 : 0));
  assert.deepEqual(await vae.score(grey, { k: 3, seed }), await vae.score(bits, { k: 3, seed }));
});

test('bitsPerDim divides each score by C H W ln 2', async () => {
  const x = ref('x').data, nats = await vae.score(x, { k: 2, seed }), bits = await vae.score(x, { k: 2, seed, bitsPerDim: true });
  assertClose(bits, nats.map((v) => v / (784 * Math.LN2)), 1e-12, 'bits per dimension');
});

test('eps of the wrong length or not finite is refused in one line', async () => {
  const x = ref('x').data, n = ref('x').shape[0];
  await assert.rejects(vae.score(x, { k: 2, eps: new Float32Array(n * vae.latentDim) }),
    (e) => e instanceof RuntimeInputError && /^eps has 160 numbers; expected k x n x latent_dim = 2 x 5 x 32 = 320$/.test(e.message));
  const eps = new Float32Array(2 * n * vae.latentDim).fill(0.5);
  eps[7] = NaN;
  await assert.rejects(vae.score(x, { k: 2, eps }), (e) => e instanceof RuntimeInputError && e.message === 'eps contains NaN or inf');
  await assert.rejects(vae.score(x, { k: 0 }), RuntimeInputError);
});

test('a folder without score.onnx is refused in one line on the first score, saying to re-export', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vae-edge-score-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(BUNDLED, dir, { recursive: true });
  const meta = JSON.parse(readFileSync(path.join(dir, 'vae.json'), 'utf8'));
  delete meta.files.score;
  rmSync(path.join(dir, 'score.onnx'));
  writeFileSync(path.join(dir, 'vae.json'), JSON.stringify(meta));
  const old = await VAE.load(dir);
  await assert.rejects(old.score(ref('x').data), (e) => e instanceof ModelFolderError && !e.message.includes('\n') &&
    e.message === `${dir} has no score.onnx (exported before vae-edge 0.2.0 wrote one); re-export it with vae-export ` +
    'to score images');
});

test("a score.onnx that is not the score graph is refused at its first score, in runtime/graph.py's words", async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vae-edge-score-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(BUNDLED, dir, { recursive: true });
  const meta = JSON.parse(readFileSync(path.join(dir, 'vae.json'), 'utf8'));
  meta.files.score = meta.files.prior; // a real, checked file with another contract
  writeFileSync(path.join(dir, 'vae.json'), JSON.stringify(meta));
  const swapped = await VAE.load(dir);
  await assert.rejects(swapped.score(ref('x').data), (e) => e instanceof ModelFolderError &&
    e.message.startsWith(`${path.join(dir, 'prior.onnx')} is not the score graph vae.json describes: it maps `) &&
    e.message.endsWith('; expected x float32 [batch, 1, 28, 28], eps float32 [samples, batch, 32] -> log_w float32 [samples, batch]'));
});
