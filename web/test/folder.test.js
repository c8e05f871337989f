// A model folder is read once (issue 35): readFolder gives a ModelFolder, whose facts every part of a load takes;
// a load reads vae.json once and each file it needs once, read and hashed once, counted on the bundled format-2
// folder by a backend that counts what it opens and a Web Crypto that counts what it hashes (named by the sha256
// vae.json gives it).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { ModelFolderError, VAE } from 'vae-edge';
import { ModelFolder, readFolder } from '../src/folder.js';
import { openFile } from '../src/node-files.js';

const BUNDLED = fileURLToPath(new URL('../../runtime/models/fashion-mnist', import.meta.url));
const FOLDERS = fileURLToPath(new URL('../../tests/conformance/folders', import.meta.url));
const DISK = { join: path.join, open: openFile }; // a backend without onnxruntime: readFolder needs no more
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

// -- the ModelFolder ------------------------------------------------------------------------------------------

test("readFolder gives a format-2 folder's facts: shape, latent size, prior, what it loads, binarized", async () => {
  const folder = await readFolder(DISK, BUNDLED);
  assert.ok(folder instanceof ModelFolder);
  assert.equal(folder.path, BUNDLED);
  assert.deepEqual(folder.meta, META);
  assert.deepEqual(folder.metaBytes, new Uint8Array(readFileSync(path.join(BUNDLED, 'vae.json'))));
  assert.equal(folder.formatVersion, 2);
  assert.deepEqual(folder.inputShape, [1, 28, 28]);
  assert.equal(folder.latentDim, 32);
  assert.deepEqual(folder.prior, META.prior);
  assert.deepEqual(folder.loads, ['prior']);
  assert.equal(folder.binarized, true);
  assert.equal(folder.has('score'), true);
  assert.deepEqual(folder.filesFor('int8'), ['encoder_int8', 'decoder_int8']);
  assert.equal(folder.where('score'), path.join(BUNDLED, 'score.onnx'));
});

test('a format-1 folder has no prior and loads nothing beside its precision\'s files', async () => {
  const folder = await readFolder(DISK, path.join(FOLDERS, 'valid'));
  assert.equal(folder.formatVersion, 1);
  assert.equal(folder.prior, null);
  assert.deepEqual(folder.loads, []);
  assert.equal(folder.binarized, false);
  assert.deepEqual(folder.filesFor('fp32'), ['encoder', 'decoder']);
  const decoder = new Uint8Array(readFileSync(path.join(FOLDERS, 'valid', 'decoder.onnx')));
  assert.deepEqual(await folder.read('decoder'), decoder);
});

test('a ModelFolder cannot change: its fields and vae.json are frozen', async () => {
  const folder = await readFolder(DISK, BUNDLED);
  assert.throws(() => { folder.latentDim = 3; }, TypeError);
  assert.throws(() => { folder.inputShape[0] = 3; }, TypeError);
  assert.throws(() => { folder.meta.files.decoder.path = 'encoder.onnx'; }, TypeError);
});

test('only readFolder builds a ModelFolder', () => {
  assert.throws(() => new ModelFolder(Symbol('readFolder'), DISK, BUNDLED, 'vae.json', META, new Uint8Array()),
    { name: 'TypeError', message: 'a ModelFolder is built by readFolder(backend, folder)' });
});

test('filesFor and where refuse what the folder lacks, in one line', async () => {
  const missing = await readFolder(DISK, path.join(FOLDERS, 'int8-missing'));
  assert.throws(() => missing.filesFor('int8'), (e) => e instanceof ModelFolderError && e.message.startsWith(
    `${path.join(FOLDERS, 'int8-missing')} has no int8 files; re-export`));
  assert.throws(() => missing.where('score'), (e) => e instanceof ModelFolderError &&
    e.message === `${path.join(FOLDERS, 'int8-missing', 'vae.json')} lists no score file (path, sha256 and bytes)`);
});
