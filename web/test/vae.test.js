// The library on onnxruntime-node against the Python runtime's outputs (saved by tests/test_web.py into
// $VAE_EDGE_REFERENCE), then sampling, bad input and model folders that must be refused.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ModelFolderError, RuntimeInputError, VAE } from 'vae-edge';
import { loadNpy } from '../tools/npy.js';
import { difference, ruleIn } from '../tools/tolerance.js';

const ROOT = process.env.VAE_EDGE_REFERENCE;
if (!ROOT) {
  throw new Error('VAE_EDGE_REFERENCE is not set: run `make test-web` (or pytest tests/test_web.py), which exports ' +
    'models and saves the Python runtime outputs for these tests');
}
const MODELS = readdirSync(ROOT).filter((d) => existsSync(path.join(ROOT, d, 'model', 'vae.json'))).sort();
const PRECISIONS = ['fp32', 'int8'];

/** got within 1e-5 of the Python runtime's output, or for int8 within the rule saved beside it (tools/tolerance.js). */
function assertClose(got, want, what, rule, output = 'x') {
  const off = difference(got, want.data, rule, output);
  assert.ok(off === null, `${what}: ${off}`);
}

test('there are reference outputs to compare with', () => {
  assert.ok(MODELS.length >= 2, `expected exported models in ${ROOT}, found ${MODELS.join(', ') || 'none'}`);
});

for (const name of MODELS) {
  const dir = path.join(ROOT, name);
  const inputs = (key) => loadNpy(path.join(dir, 'inputs', `${key}.npy`));
  for (const precision of PRECISIONS.filter((p) => existsSync(path.join(dir, p)))) {
    describe(`${name} ${precision}: the library equals the Python runtime`, () => {
      const want = (key) => loadNpy(path.join(dir, precision, `${key}.npy`));
      const rule = ruleIn(path.join(dir, precision)); // undefined for fp32: within 1e-5
      let vae;
      before(async () => { vae = await VAE.load(path.join(dir, 'model'), { precision }); });

      test("sample(n, {seed, temperature}) gives the Python runtime's images for that seed", async () => {
        const { n, seed, temperature } = JSON.parse(readFileSync(path.join(dir, 'inputs', 'sample.json'), 'utf8'));
        assertClose(await vae.sample(n, { seed, temperature }), want('sample'), `sample, seed ${seed}`, rule);
      });
      test('decode', async () => {
        const z = inputs('z');
        assertClose(await vae.decode(z.data, z.shape[0]), want('decode'), 'decode', rule);
      });
      test('encode gives mu and logvar', async () => {
        const { mu, logvar } = await vae.encode(inputs('x').data);
        assertClose(mu, want('mu'), 'mu', rule, 'mu');
        assertClose(logvar, want('logvar'), 'logvar', rule, 'mu');
      });
      test('encode reads a Uint8Array as pixels / 255', async () => {
        assertClose((await vae.encode(inputs('x_uint8').data)).mu, want('mu_uint8'), 'mu of uint8 images', rule, 'mu');
      });
      test('reconstruct', async () => {
        assertClose(await vae.reconstruct(inputs('x').data), want('reconstruct'), 'reconstruct', rule);
      });
      test('interpolate between two images', async () => {
        const x = inputs('x').data, d = vae.inputShape.reduce((a, b) => a * b);
        const steps = want('interpolate').shape[0];
        const got = await vae.interpolate(x.subarray(0, d), x.subarray(d, 2 * d), steps);
        assertClose(got, want('interpolate'), 'interpolate', rule);
      });
      if (existsSync(path.join(dir, 'inputs', 'eps.npy'))) {
        test('the prior graph turns the same noise into the same z', async () => {
          const eps = inputs('eps'), u = inputs('u');
          assertClose(await vae.fromNoise(eps.data, u.data, eps.shape[0]), want('from_noise'), 'z from noise', rule);
        });
        test('sample decodes latents(n, same options): the prior graph on temperature-scaled eps', async () => {
          const z = await vae.latents(3, { seed: 4, temperature: 0.7 });
          assert.deepEqual(await vae.sample(3, { seed: 4, temperature: 0.7 }), await vae.decode(z));
          assert.equal(vae.prior, 'vamp');
        });
      }
    });
  }
}

// -- one model for the rest ------------------------------------------------------------------------------------

const MLP = path.join(ROOT, 'mlp', 'model');
const META = () => JSON.parse(readFileSync(path.join(MLP, 'vae.json'), 'utf8'));

describe('the loaded model', () => {
  let vae;
  before(async () => { vae = await VAE.load(MLP); });

  test('tells its facts from vae.json', () => {
    const meta = META();
    assert.equal(vae.latentDim, meta.model.latent_dim);
    assert.deepEqual(vae.inputShape, meta.model.input_shape);
    assert.equal(vae.precision, 'fp32');
    assert.deepEqual(vae.meta, meta);
  });
  test('accepts z as an array of latent vectors', async () => {
    const z = inputs2d(3, vae.latentDim);
    assert.deepEqual(await vae.decode(z), await vae.decode(Float32Array.from(z.flat())));
  });
  test('sample: the same seed gives the same images, another seed others', async () => {
    const a = await vae.sample(5, { seed: 7 }), b = await vae.sample(5, { seed: 7 }), c = await vae.sample(5, { seed: 8 });
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    assert.equal(a.length, 5 * vae.inputShape.reduce((x, y) => x * y));
  });
  test('sample decodes latents(n, same options), scaled by the temperature', async () => {
    const z = await vae.latents(4, { seed: 3, temperature: 0.5 });
    assert.deepEqual(await vae.sample(4, { seed: 3, temperature: 0.5 }), await vae.decode(z));
    const z1 = await vae.latents(4, { seed: 3 });
    z1.forEach((v, i) => assert.equal(z[i], Math.fround(v * 0.5)));
  });
  test('temperature 0 decodes z = 0 for every sample', async () => {
    const images = await vae.sample(3, { seed: 1, temperature: 0 });
    const zero = await vae.decode(new Float32Array(vae.latentDim));
    for (let k = 0; k < 3; k++) assert.deepEqual(images.subarray(k * zero.length, (k + 1) * zero.length), zero);
  });
  test('results do not depend on batchSize', async () => {
    const small = await VAE.load(MLP, { batchSize: 2 });
    assert.deepEqual(await small.sample(7, { seed: 5 }), await vae.sample(7, { seed: 5 }));
    const x = new Float32Array(5 * vae.inputShape.reduce((a, b) => a * b)).map(() => Math.random());
    assert.deepEqual(await small.encode(x), await vae.encode(x));
  });
  test('without a seed, two samples differ', async () => {
    assert.notDeepEqual(await vae.sample(2), await vae.sample(2));
  });
});

function inputs2d(n, d) {
  return Array.from({ length: n }, () => Array.from({ length: d }, () => Math.random() * 2 - 1));
}

// -- bad input: one-line errors, never a silent wrong picture ---------------------------------------------------

describe('bad input is refused with a one-line RuntimeInputError', () => {
  let vae;
  before(async () => { vae = await VAE.load(MLP); });
  const refuses = (fn, pattern) => assert.rejects(fn, (e) => {
    assert.ok(e instanceof RuntimeInputError, `${e.name}: ${e.message}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('\n'), 'the message is one line');
    return true;
  });
  const L = () => vae.latentDim;

  const D = () => vae.inputShape.reduce((a, b) => a * b);

  test('z of the wrong length', () =>
    refuses(() => vae.decode(new Float32Array(L() + 1)), new RegExp(`has ${L() + 1} numbers; expected a multiple of ${L()}`)));
  test('z that disagrees with n', () => refuses(() => vae.decode(new Float32Array(2 * L()), 3), /but n is 3/));
  test('a row of z of the wrong length', () => refuses(() => vae.decode([new Array(L()).fill(0), [1, 2]]), /z\[1\] has 2 numbers/));
  test('z with NaN', () => refuses(() => vae.decode(new Float32Array(L()).fill(NaN)), /NaN or inf/));
  test('z with inf', () => refuses(() => vae.decode(new Float32Array(L()).fill(Infinity)), /NaN or inf/));
  test('empty z', () => refuses(() => vae.decode(new Float32Array(0)), /empty/));
  test('z that is not numbers', () => refuses(() => vae.decode('0.5'), /must be a Float32Array/));
  test('x outside [0, 1]', () => refuses(() => vae.encode(new Float32Array(D()).fill(2)), /floats must lie in \[0, 1\]/));
  test('x with NaN', () => refuses(() => vae.encode(new Float32Array(D()).fill(NaN)), /NaN or inf/));
  test('x of the wrong length', () => refuses(() => vae.encode(new Uint8Array(D() - 1)), new RegExp(`expected a multiple of ${D()}`)));
  test('n <= 0', () => refuses(() => vae.sample(0), /n must be >= 1/));
  test('n not an integer', () => refuses(() => vae.sample(2.5), /n must be an integer/));
  test('a negative temperature', () => refuses(() => vae.sample(2, { temperature: -1 }), /temperature must be a finite number >= 0/));
  test('a NaN temperature', () => refuses(() => vae.sample(2, { temperature: NaN }), /temperature/));
  test('a negative seed', () => refuses(() => vae.sample(2, { seed: -1 }), /seed must be an integer/));
  test('interpolation with fewer than 2 steps', () => refuses(() => vae.interpolate(new Float32Array(D()), new Float32Array(D()), 1), /steps must be >= 2/));
  test('interpolation between different numbers of images', () =>
    refuses(() => vae.interpolate(new Float32Array(D()), new Float32Array(2 * D())), /different numbers of images/));
  test('an unknown precision', () => refuses(() => VAE.load(MLP, { precision: 'fp16' }), /precision must be one of fp32, int8/));
  test('a negative thread count', () => refuses(() => VAE.load(MLP, { threads: -1 }), /threads must be an integer from 0 \(onnxruntime decides\) to 1024/));
  test('encode on a decoder-only model', async () => {
    const dec = await VAE.load(MLP, { decoderOnly: true });
    assert.equal((await dec.sample(2, { seed: 0 })).length, 2 * D());
    await refuses(() => dec.encode(new Float32Array(D())), /decoderOnly/);
  });
});

// -- model folders ---------------------------------------------------------------------------------------------

describe('model folders', () => {
  let tmp;
  before(() => { tmp = mkdtempSync(path.join(os.tmpdir(), 'vae-edge-folders-')); });
  after(() => rmSync(tmp, { recursive: true, force: true }));
  let count = 0;
  const copy = (from = MLP) => {
    const dst = path.join(tmp, `m${count++}`);
    cpSync(from, dst, { recursive: true });
    return dst;
  };
  const editMeta = (folder, edit) => {
    const meta = JSON.parse(readFileSync(path.join(folder, 'vae.json'), 'utf8'));
    edit(meta);
    writeFileSync(path.join(folder, 'vae.json'), JSON.stringify(meta));
  };
  const rehash = (folder, key) => editMeta(folder, (meta) => {
    const bytes = readFileSync(path.join(folder, meta.files[key].path));
    Object.assign(meta.files[key], { sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length });
  });
  const refuses = (fn, pattern) => assert.rejects(fn, (e) => {
    assert.ok(e instanceof ModelFolderError, `${e.name}: ${e.message}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('\n'), 'the message is one line');
    return true;
  });

  test('a changed byte in the decoder fails the sha256 check', () => {
    const folder = copy();
    const file = path.join(folder, 'decoder.onnx'), bytes = readFileSync(file);
    bytes[bytes.length >> 1] ^= 1;
    writeFileSync(file, bytes);
    return refuses(() => VAE.load(folder), /decoder\.onnx does not match the sha256 in vae\.json/);
  });
  test('a changed byte in an int8 encoder fails it too', () => {
    const folder = copy();
    const file = path.join(folder, 'encoder.int8.onnx'), bytes = readFileSync(file);
    bytes[100] ^= 0xff;
    writeFileSync(file, bytes);
    return refuses(() => VAE.load(folder, { precision: 'int8' }), /encoder\.int8\.onnx does not match the sha256/);
  });
  test('a missing folder', () => refuses(() => VAE.load(path.join(tmp, 'nothing-here')), /no exported model at .*nothing-here/));
  test('vae.json that is not JSON', () => {
    const folder = copy();
    writeFileSync(path.join(folder, 'vae.json'), '{"format": ');
    return refuses(() => VAE.load(folder), /is not readable JSON/);
  });
  test('another format', () => {
    const folder = copy();
    editMeta(folder, (m) => { m.format = 'something-else'; });
    return refuses(() => VAE.load(folder), /not a vae-edge ONNX export/);
  });
  test('a newer format_version', () => {
    const folder = copy();
    editMeta(folder, (m) => { m.format_version = 3; m.min_vae_edge = '0.9.0'; });
    return refuses(() => VAE.load(folder), /format_version 3, newer than this vae-edge reads \(up to 2\); it needs vae-edge >= 0\.9\.0/);
  });
  test('a file path that leaves the folder', () => {
    const folder = copy();
    editMeta(folder, (m) => { m.files.decoder.path = '../decoder.onnx'; });
    return refuses(() => VAE.load(folder), /is not a plain path inside the model folder/);
  });
  test('a listed file that is missing', () => {
    const folder = copy();
    rmSync(path.join(folder, 'decoder.onnx'));
    return refuses(() => VAE.load(folder), /cannot read .*decoder\.onnx/);
  });
  test('a file that is not ONNX, with a matching sha256', () => {
    const folder = copy();
    writeFileSync(path.join(folder, 'decoder.onnx'), 'not a model');
    rehash(folder, 'decoder');
    return refuses(() => VAE.load(folder), /decoder\.onnx is not a loadable ONNX model/);
  });
  test('encoder and decoder swapped', () => {
    const folder = copy();
    editMeta(folder, (m) => { [m.files.encoder, m.files.decoder] = [m.files.decoder, m.files.encoder]; });
    return refuses(() => VAE.load(folder), /is not a decoder \(z -> x\).*; encoder and decoder swapped\?/);
  });
  test('a latent_dim in vae.json that the decoder does not take', () => {
    const folder = copy();
    const { latent_dim: L } = META().model;
    editMeta(folder, (m) => { m.model.latent_dim += 1; });
    return refuses(() => VAE.load(folder), new RegExp(`disagree on latent_dim: vae\\.json says ${L + 1}, the decoder takes \\[${L}\\]`));
  });
  test('an input_shape in vae.json that the decoder does not give', () => {
    const folder = copy();
    const [c, h, w] = META().model.input_shape;
    editMeta(folder, (m) => { m.model.input_shape = [c, h / 2, w * 2]; });
    return refuses(() => VAE.load(folder),
      new RegExp(`the decoder returns x of shape \\[batch,${c},${h},${w}\\] but vae\\.json says input_shape \\[${c},${h / 2},${w * 2}\\]`));
  });
  test('int8 from a folder without int8 files', () => {
    const folder = copy(path.join(ROOT, 'conv', 'model'));
    return refuses(() => VAE.load(folder, { precision: 'int8' }), /has no int8 files/);
  });
  test('an export with .ort copies (vae-export --ort) loads; the library reads the .onnx files', async () => {
    const conv = path.join(ROOT, 'conv', 'model');
    const meta = JSON.parse(readFileSync(path.join(conv, 'vae.json'), 'utf8'));
    assert.ok(Object.keys(meta.files).some((k) => meta.files[k].path.endsWith('.ort')), 'the conv export lists .ort files');
    const vae = await VAE.load(conv, { decoderOnly: true });
    assert.equal(vae.latentDim, meta.model.latent_dim);
  });
  test('unknown keys, and files it does not load, are left alone: only what is loaded is checked', async () => {
    const folder = copy();
    editMeta(folder, (m) => {
      m.onnx = { ir_version: 8, opset: 17, min_onnxruntime: '1.16' };
      m.files.decoder_ort = { path: 'decoder.ort', sha256: '0'.repeat(64), bytes: 1 }; // not on disk
      m.files.encoder_int8.sha256 = 'f'.repeat(64); // wrong, but fp32 never reads it
    });
    const vae = await VAE.load(folder);
    assert.equal((await vae.sample(1, { seed: 0 })).length, META().model.input_shape.reduce((a, b) => a * b));
    await refuses(() => VAE.load(folder, { precision: 'int8' }), /encoder\.int8\.onnx does not match the sha256/);
  });
});
