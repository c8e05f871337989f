// The VAE of a vae-edge export (encoder.onnx, decoder.onnx, vae.json), as vae_edge.runtime.VAE is in Python:
// load with sha256 checks, then decode, encode, sample, reconstruct, interpolate. This file knows no backend;
// node.js binds it to onnxruntime-node and the file system, browser.js to onnxruntime-web and fetch.
//
// Arrays are flat Float32Arrays in the Python runtime's layouts: z is (n, latent_dim), images (n, C, H, W).

import { Prior, formatProblem, noise } from './prior.js';
import { randomSeed } from './random.js';
import { sha256 } from './sha256.js';

export const FORMAT = 'vae-edge-onnx';
export { FORMAT_VERSIONS } from './prior.js';
export const PRECISIONS = { fp32: ['encoder', 'decoder'], int8: ['encoder_int8', 'decoder_int8'] };
export const DEFAULT_BATCH_SIZE = 1024;

/** Bad input from the caller (length, NaN/inf, n <= 0, ...); the message is one line. */
export class RuntimeInputError extends Error {
  name = 'RuntimeInputError';
}

/** A model folder that is missing, tampered with, corrupt or inconsistent; the message is one line. */
export class ModelFolderError extends Error {
  name = 'ModelFolderError';
}

const oneLine = (e) => String(e?.message ?? e).trim().split('\n')[0].slice(0, 300) || 'unknown error';

/** Read a file over http(s) as bytes; a missing one is a ModelFolderError. Both backends use it for URLs. */
export async function fetchBytes(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new ModelFolderError(`cannot read ${url}: ${oneLine(e)}`);
  }
  if (!response.ok) {
    const e = new ModelFolderError(`cannot read ${url}: HTTP ${response.status}`);
    e.status = response.status;
    throw e;
  }
  return new Uint8Array(await response.arrayBuffer());
}

export class VAE {
  /** Set by the backend's subclass (node.js, browser.js): {ort, join, read, session}. */
  static backend = null;

  /**
   * Load an export folder (a path in Node, a URL in the browser), refusing files whose sha256 differs from vae.json.
   * Options: precision 'fp32' | 'int8', threads (onnxruntime's; unset: its default), batchSize (images per run),
   * decoderOnly (load and check the decoder alone: enough for decode and sample).
   */
  static async load(folder = 'vae-onnx', { precision = 'fp32', threads, batchSize = DEFAULT_BATCH_SIZE,
    decoderOnly = false } = {}) {
    const backend = this.backend;
    if (!backend) throw new Error("import VAE from 'vae-edge' (src/node.js or src/browser.js), not from src/vae.js");
    if (!Object.hasOwn(PRECISIONS, precision)) {
      throw new RuntimeInputError(`precision must be one of ${Object.keys(PRECISIONS).join(', ')}, got ${show(precision)}`);
    }
    if (threads !== undefined && !(Number.isInteger(threads) && threads >= 0)) {
      throw new RuntimeInputError(`threads must be a non-negative integer (0: onnxruntime decides), got ${show(threads)}`);
    }
    checkCount(batchSize, 'batchSize');
    folder = String(folder).replace(/\/+$/, '') || '.';
    const meta = await readMeta(backend, folder);
    const [encKey, decKey] = PRECISIONS[precision];
    if (precision === 'int8' && !(meta.files[encKey] && meta.files[decKey])) {
      throw new ModelFolderError(`${folder} has no int8 files; re-export with \`vae-export ... --quantize int8\` ` +
        "or use precision 'fp32'");
    }
    const session = async (key) => {
      const bytes = await checkFile(backend, folder, meta, key);
      try {
        return await backend.session(bytes, threads);
      } catch (e) {
        throw new ModelFolderError(`${backend.join(folder, meta.files[key].path)} is not a loadable ONNX model ` +
          `(corrupt?): ${oneLine(e)}`);
      }
    };
    const decoder = await session(decKey);
    const encoder = decoderOnly ? null : await session(encKey);
    const prior = meta.prior ? await session('prior') : null; // format 2: prior.onnx, fp32 at any precision
    return new this(encoder, decoder, meta, { precision, batchSize, name: folder, prior });
  }

  constructor(encoder, decoder, meta, { precision = 'fp32', batchSize = DEFAULT_BATCH_SIZE, name = 'model', prior = null } = {}) {
    this.encoder = encoder;
    this._prior = prior ? new Prior(prior, meta) : null;
    this.decoder = decoder;
    this.precision = precision;
    this.batchSize = checkCount(batchSize, 'batchSize');
    this._meta = meta;
    this._shape = meta.model.input_shape.map(Number);
    this._latent = Number(meta.model.latent_dim);
    this._pixels = this._shape.reduce((a, b) => a * b);
    checkDecoder(decoder, this._shape, this._latent, name);
    if (encoder) checkEncoder(encoder, this._shape, this._latent, name);
  }

  // -- facts --------------------------------------------------------------------------------------------
  get latentDim() {
    return this._latent;
  }

  /** [C, H, W] */
  get inputShape() {
    return [...this._shape];
  }

  /** vae.json (a copy: the loaded model never changes). */
  get meta() {
    return structuredClone(this._meta);
  }

  // -- the networks -------------------------------------------------------------------------------------
  /** z (n x latent_dim numbers) -> pixel probabilities, n x C x H x W float32 in [0, 1]. */
  async decode(z, n) {
    z = this._checkZ(z, n);
    const count = z.length / this._latent;
    const out = new Float32Array(count * this._pixels);
    for (let i = 0; i < count; i += this.batchSize) {
      const m = Math.min(this.batchSize, count - i);
      out.set(await this._decodeChunk(part(z, i * this._latent, m * this._latent), m), i * this._pixels);
    }
    return out;
  }

  /** x (n images: floats in [0, 1], or a Uint8Array of 0..255) -> {mu, logvar}, each n x latent_dim float32. */
  async encode(x, n) {
    if (!this.encoder) throw new RuntimeInputError('this VAE was loaded with decoderOnly: true; load it without to encode');
    x = this._checkX(x, n);
    const count = x.length / this._pixels;
    const mu = new Float32Array(count * this._latent), logvar = new Float32Array(count * this._latent);
    for (let i = 0; i < count; i += this.batchSize) {
      const m = Math.min(this.batchSize, count - i);
      const got = await this._encodeChunk(part(x, i * this._pixels, m * this._pixels), m);
      mu.set(got.mu, i * this._latent);
      logvar.set(got.logvar, i * this._latent);
    }
    return { mu, logvar };
  }

  /** The prior's name: 'gaussian' (N(0, I)) or 'vamp'; vae.json's prior says more. */
  get prior() {
    return this._prior ? this._prior.name : 'gaussian';
  }

  /**
   * n latents from a seeded generator: the z that sample(n, same options) decodes. z = temperature * N(0, I), or,
   * with a learned prior or two layers, prior.onnx(temperature * eps, u) (prior.js). Async: it may run a graph.
   */
  async latents(n, { seed, temperature = 1 } = {}) {
    n = checkCount(n, 'n');
    temperature = checkTemperature(temperature);
    const { eps, u } = noise(n, this._latent, checkSeed(seed), temperature);
    return this._prior ? this._prior.z(eps, u, n, this._latent, this.constructor.backend.ort.Tensor) : eps;
  }

  /** The z that sample() decodes for given noise: eps (n x latent_dim) and, for a mixture, u (n numbers in [0, 1)). */
  async fromNoise(eps, u, n) {
    eps = this._checkZ(eps, n);
    if (!this._prior) return Float32Array.from(eps);
    return this._prior.z(eps, u, eps.length / this._latent, this._latent, this.constructor.backend.ort.Tensor);
  }

  /** n images (n x C x H x W float32) decoded from z = temperature * N(0, I); the same seed gives the same images. */
  async sample(n, { seed, temperature = 1 } = {}) {
    return this.decode(await this.latents(n, { seed, temperature }));
  }

  /** decode(mu(x)): probabilities of the same length as x. */
  async reconstruct(x, n) {
    return this.decode((await this.encode(x, n)).mu);
  }

  /**
   * Decode `steps` points on the line from mu(a) to mu(b), both ends included. a and b hold one image each
   * (-> steps x C x H x W) or the same number of images (-> steps x n x C x H x W).
   */
  async interpolate(a, b, steps = 8) {
    steps = checkCount(steps, 'steps');
    if (steps < 2) throw new RuntimeInputError(`steps must be >= 2 (both ends are included), got ${steps}`);
    a = this._checkX(a, undefined, 'a');
    b = this._checkX(b, undefined, 'b');
    if (a.length !== b.length) {
      throw new RuntimeInputError(`a and b hold different numbers of images: ${a.length / this._pixels} vs ${b.length / this._pixels}`);
    }
    const [mu1, mu2] = [(await this.encode(a)).mu, (await this.encode(b)).mu];
    const d = mu1.length;
    const z = new Float32Array(steps * d);
    const f = Math.fround, step = 1 / (steps - 1);
    for (let s = 0; s < steps; s++) {
      const t = s === steps - 1 ? 1 : f(s * step); // as numpy's linspace(0, 1, steps, dtype=float32)
      for (let i = 0; i < d; i++) z[s * d + i] = f(f(f(1 - t) * mu1[i]) + f(t * mu2[i]));
    }
    return this.decode(z);
  }

  async _decodeChunk(z, m) {
    const { Tensor } = this.constructor.backend.ort;
    const out = await this.decoder.run({ [this.decoder.inputNames[0]]: new Tensor('float32', z, [m, this._latent]) });
    return out[this.decoder.outputNames[0]].data;
  }

  async _encodeChunk(x, m) {
    const { Tensor } = this.constructor.backend.ort;
    const out = await this.encoder.run({ [this.encoder.inputNames[0]]: new Tensor('float32', x, [m, ...this._shape]) });
    return { mu: out.mu.data, logvar: out.logvar.data };
  }

  // -- input checks -------------------------------------------------------------------------------------
  _checkZ(z, n) {
    const d = this._latent;
    z = toFloat32(z, 'z', d, `latent_dim ${d}`);
    checkLength(z.length, n, d, 'z', `latent vectors of latent_dim ${d}`);
    if (!z.every(Number.isFinite)) throw new RuntimeInputError('z contains NaN or inf');
    return z;
  }

  _checkX(x, n, what = 'x') {
    const d = this._pixels, [c, h, w] = this._shape;
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
}

// -- the model folder ---------------------------------------------------------------------------------------

async function readMeta(backend, folder) {
  const where = backend.join(folder, 'vae.json');
  let bytes, meta;
  try {
    bytes = await backend.read(where);
  } catch (e) {
    if (e?.code === 'ENOENT' || e?.code === 'ENOTDIR' || e?.status === 404) {
      throw new ModelFolderError(`no exported model at ${folder}; run \`vae-export model.pt --out ${folder}\` first`);
    }
    throw e instanceof ModelFolderError ? e : new ModelFolderError(`cannot read ${where}: ${oneLine(e)}`);
  }
  try {
    meta = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new ModelFolderError(`${where} is not readable JSON (corrupt?): ${oneLine(e)}`);
  }
  if (meta?.format !== FORMAT) throw new ModelFolderError(`${where} is not a vae-edge ONNX export (format should be '${FORMAT}')`);
  if (formatProblem(meta)) throw new ModelFolderError(`${where} ${formatProblem(meta)}`);
  const shape = meta.model?.input_shape, latent = meta.model?.latent_dim;
  const positive = (v) => Number.isInteger(v) && v > 0;
  if (!(Array.isArray(shape) && shape.length === 3 && shape.every(positive) && positive(latent)
    && meta.files && typeof meta.files === 'object')) {
    throw new ModelFolderError(`${where} lacks valid model.input_shape, model.latent_dim or files`);
  }
  return meta;
}

/** The bytes of files[key], refusing a missing file or one whose sha256 differs from vae.json. */
async function checkFile(backend, folder, meta, key) {
  const entry = meta.files[key];
  const where = backend.join(folder, 'vae.json');
  if (!entry || typeof entry.path !== 'string' || typeof entry.sha256 !== 'string') {
    throw new ModelFolderError(`${where} lists no ${key} file`);
  }
  // The path comes from a file we do not control: keep it inside the folder.
  const name = entry.path;
  if (/^([a-z][a-z0-9+.-]*:|[/\\])/i.test(name) || name.split(/[/\\]/).includes('..')) {
    throw new ModelFolderError(`${where}: ${key} path '${name}' leaves the model folder`);
  }
  const path = backend.join(folder, name);
  let bytes;
  try {
    bytes = await backend.read(path);
  } catch (e) {
    throw e instanceof ModelFolderError ? e : new ModelFolderError(`cannot read ${path}: ${oneLine(e)}`);
  }
  if ((await sha256(bytes)) !== entry.sha256) {
    throw new ModelFolderError(`${path} does not match the sha256 in vae.json (tampered or corrupt); refusing to load it`);
  }
  return bytes;
}

// Static dims of an input or output past the batch axis; a symbolic dim is null.
const dims = (m) => (m?.shape ?? []).slice(1).map((d) => (typeof d === 'number' && d >= 0 ? d : null));
const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

function checkDecoder(decoder, shape, latent, name) {
  if (decoder.inputNames.length !== 1 || decoder.outputNames.length !== 1) {
    throw new ModelFolderError(`${name}: the decoder file is not a decoder (z -> x); encoder and decoder swapped?`);
  }
  const [zIn] = decoder.inputMetadata, [xOut] = decoder.outputMetadata;
  if (!same(dims(xOut), shape)) {
    throw new ModelFolderError(`${name}: the decoder returns x of shape [${xOut.shape}] but vae.json says input_shape [${shape}]`);
  }
  if (!same(dims(zIn), [latent])) {
    throw new ModelFolderError(`${name}: the decoder and vae.json disagree on latent_dim: vae.json says ${latent}, ` +
      `the decoder takes [${dims(zIn)}]`);
  }
}

function checkEncoder(encoder, shape, latent, name) {
  if (encoder.inputNames.length !== 1 || !same([...encoder.outputNames].sort(), ['logvar', 'mu'])) {
    throw new ModelFolderError(`${name}: the encoder file is not an encoder (x -> mu, logvar); encoder and decoder swapped?`);
  }
  const [xIn] = encoder.inputMetadata;
  if (!same(dims(xIn), shape)) {
    throw new ModelFolderError(`${name}: the encoder takes x of shape [${xIn.shape}] but vae.json says input_shape [${shape}]`);
  }
  for (const out of encoder.outputMetadata) {
    if (!same(dims(out), [latent])) {
      throw new ModelFolderError(`${name}: the encoder and vae.json disagree on latent_dim: vae.json says ${latent}, ` +
        `the encoder gives ${out.name} of [${dims(out)}]`);
    }
  }
}

// -- argument checks ----------------------------------------------------------------------------------------

function show(v) {
  if (typeof v === 'string') return `'${v}'`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name} of ${v.length}`;
  return typeof v === 'object' && v !== null ? `an object (${v.constructor?.name ?? 'Object'})` : String(v);
}

function checkCount(n, what) {
  if (!Number.isInteger(n)) throw new RuntimeInputError(`${what} must be an integer, got ${show(n)}`);
  if (n <= 0) throw new RuntimeInputError(`${what} must be >= 1, got ${n}`);
  return n;
}

function checkTemperature(t) {
  if (typeof t !== 'number' || !Number.isFinite(t) || t < 0) {
    throw new RuntimeInputError(`temperature must be a finite number >= 0, got ${show(t)}`);
  }
  return t;
}

function checkSeed(seed) {
  if (seed === undefined || seed === null) return randomSeed();
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RuntimeInputError(`seed must be an integer in [0, 2^53), got ${show(seed)}`);
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

// A chunk of a flat array: the array itself when it is all of it.
const part = (a, start, length) => (start === 0 && length === a.length ? a : a.slice(start, start + length));
