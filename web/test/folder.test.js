// A model folder is read once (issue 35): a load reads vae.json once and each file it needs once, read and hashed
// once, counted on the bundled format-2 folder by a backend that counts what it opens and a Web Crypto that counts
// what it hashes (named by the sha256 vae.json gives it).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { VAE } from 'vae-edge';

const BUNDLED = fileURLToPath(new URL('../../runtime/models/fashion-mnist', import.meta.url));
const META = JSON.parse(readFileSync(path.join(BUNDLED, 'vae.json'), 'utf8'));
const NAMES = new Map(Object.values(META.files).map((f) => [f.sha256, f.path])); // sha256 -> the file's path

const opened = new Map(), hashed = new Map();
const bump = (counts, name) => counts.set(name, (counts.get(name) ?? 0) + 1);
const counted = (counts) => Object.fromEntries([...counts].sort());

class CountingVAE extends VAE {
  static backend = {
    ...VAE.backend,
    open: (where, folder) => {
      bump(opened, path.relative(folder, where));
      return VAE.backend.open(where, folder);
    },
  };
}

const subtle = globalThis.crypto.subtle, digest = subtle.digest;
before(() => {
  subtle.digest = function (algorithm, bytes) {
    bump(hashed, NAMES.get(createHash('sha256').update(bytes).digest('hex')) ?? 'a file vae.json does not list');
    return digest.call(this, algorithm, bytes);
  };
});
after(() => { subtle.digest = digest; });

const reset = () => { opened.clear(); hashed.clear(); };

test('a format-2 int8 load, sampled and scored twice, reads vae.json once and each file it needs once', async () => {
  assert.equal(META.format_version, 2);
  reset();
  const vae = await CountingVAE.load(BUNDLED, { precision: 'int8' });
  const x = await vae.sample(2, { seed: 0 });
  await vae.score(x, { seed: 1 });
  await vae.score(x, { k: 2, seed: 1 });
  const needed = ['decoder.int8.onnx', 'encoder.int8.onnx', 'prior.onnx', 'score.onnx'];
  assert.deepEqual(counted(opened), Object.fromEntries([['vae.json', 1], ...needed.map((f) => [f, 1])].sort()));
  assert.deepEqual(counted(hashed), Object.fromEntries(needed.map((f) => [f, 1])));
});

test('a decoder-only fp32 load reads vae.json, decoder.onnx and prior.onnx once, and score.onnx not at all', async () => {
  reset();
  await (await CountingVAE.load(BUNDLED, { decoderOnly: true })).sample(1, { seed: 0 });
  assert.deepEqual(counted(opened), { 'decoder.onnx': 1, 'prior.onnx': 1, 'vae.json': 1 });
  assert.deepEqual(counted(hashed), { 'decoder.onnx': 1, 'prior.onnx': 1 });
});
