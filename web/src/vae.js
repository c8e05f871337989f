// The VAE of a vae-edge export (encoder.onnx, decoder.onnx, vae.json), as vae_edge.runtime.VAE is in Python:
// load with sha256 checks, then decode, encode, sample, reconstruct, interpolate. This file knows no backend;
// node.js binds it to onnxruntime-node and the file system, browser.js to onnxruntime-web and fetch.
//
// Loading goes down the layers, as in Python: folder.js (vae.json read once into a ModelFolder, each file's sha256),
// sessions.js (onnxruntime), graph.js (the networks fit the folder); inputs.js checks what the caller passes.
// Arrays are flat Float32Arrays in the Python runtime's layouts: z is (n, latent_dim), images (n, C, H, W).

import { message, ModelFolderError, RuntimeInputError, show } from './errors.js';
import { PRECISIONS, readFolder } from './folder.js';
import { RULES } from './format_rules.js';
import { checkPair, checkPrior, checkScore } from './graph.js';
import { checkCount, checkSeed, checkTemperature, images, latents } from './inputs.js';
import { Prior, noise } from './prior.js';
import { Score } from './score.js';
import { openSession } from './sessions.js';

const MAX_THREADS = RULES.limits.threads; // onnxruntime starts every thread asked for (as runtime/model.py)

export { ModelFolderError, RuntimeInputError } from './errors.js';
export { FORMAT, FORMAT_VERSION_WRITTEN, FORMAT_VERSIONS, PRECISIONS, openUrl } from './folder.js';
export const DEFAULT_BATCH_SIZE = RULES.limits.batch_size;

export class VAE {
  /** Set by the backend's subclass (node.js, browser.js): {ort, join, open, session} (open: folder.js says). */
  static backend = null;

  /**
   * Load an export folder (a path in Node, a URL in the browser), refusing files whose sha256 differs from vae.json.
   * Options: precision 'fp32' | 'int8', threads (onnxruntime's; unset: its default), batchSize (images per run),
   * decoderOnly (load and check the decoder alone: enough for decode and sample).
   */
  static async load(folder = RULES.default_folder, { precision = 'fp32', threads, batchSize = DEFAULT_BATCH_SIZE,
    decoderOnly = false } = {}) {
    const backend = this.backend;
    if (!backend) throw new Error("import VAE from 'vae-edge' (src/node.js or src/browser.js), not from src/vae.js");
    if (!Object.hasOwn(PRECISIONS, precision)) {
      throw new RuntimeInputError(message('precision', { precisions: Object.keys(PRECISIONS).join(', '), got: show(precision) }));
    }
    if (threads !== undefined && !(Number.isInteger(threads) && threads >= 0 && threads <= MAX_THREADS)) {
      throw new RuntimeInputError(`threads must be an integer from 0 (onnxruntime decides) to ${MAX_THREADS}, got ${show(threads)}`);
    }
    checkCount(batchSize, 'batchSize');
    folder = await readFolder(backend, String(folder).replace(/\/+$/, '') || '.');
    const [encKey, decKey] = folder.filesFor(precision);
    // each file read and checked once, its session built from those bytes
    const session = async (key) => openSession(backend, await folder.read(key), threads, folder.where(key));
    const decoder = await session(decKey);
    const encoder = decoderOnly ? null : await session(encKey);
    const prior = folder.loads.includes('prior') ? await session('prior') : null; // prior.onnx, fp32 at any precision
    if (prior) checkPrior(prior, folder);
    // score.onnx (fp32 at any precision) is read, checked and held to its contract on the first score
    const scorer = async () => {
      if (!folder.has('score')) {
        throw new ModelFolderError(`${folder.path} has no score.onnx (exported before vae-edge 0.2.0 wrote one); ` +
          're-export it with vae-export to score images');
      }
      const score = await session('score');
      checkScore(score, folder);
      return score;
    };
    return new this(encoder, decoder, folder, { precision, batchSize, prior, scorer });
  }

  /** The networks of a ModelFolder (folder.js), whose sizes they must have; load() checks the options. */
  constructor(encoder, decoder, folder, { precision = 'fp32', batchSize = DEFAULT_BATCH_SIZE, prior = null,
    scorer = null } = {}) {
    checkPair(encoder, decoder, folder);
    this._folder = folder;
    this._prior = prior ? new Prior(prior, folder) : null;
    this._score = new Score(scorer, folder);
    this.encoder = encoder;
    this.decoder = decoder;
    this.precision = precision;
    this.batchSize = batchSize;
    this._shape = folder.inputShape;
    this._latent = folder.latentDim;
    this._pixels = this._shape.reduce((a, b) => a * b);
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
    return structuredClone(this._folder.meta);
  }

  // -- the networks -------------------------------------------------------------------------------------
  /** z (n x latent_dim numbers) -> pixel probabilities, n x C x H x W float32 in [0, 1]. */
  async decode(z, n) {
    z = latents(z, n, this._latent);
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
    this._needEncoder();
    return this._encode(images(x, n, this._shape));
  }

  // The encoder on images encode or interpolate has checked (each argument is checked once).
  async _encode(x) {
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
    eps = latents(eps, n, this._latent);
    if (!this._prior) return Float32Array.from(eps);
    return this._prior.z(eps, u, eps.length / this._latent, this._latent, this.constructor.backend.ort.Tensor);
  }

  /** n images (n x C x H x W float32) decoded from z (above); the same seed gives the same images. */
  async sample(n, { seed, temperature = 1 } = {}) {
    return this.decode(await this.latents(n, { seed, temperature }));
  }

  /**
   * Each image's score in nats (a Float64Array): the negative ELBO at k = 1, the negative IWAE bound with k
   * importance samples for k > 1, from the folder's score.onnx (read on the first score); higher is less likely.
   * A binarized model's images are binarized first (a pixel >= 0.5 is 1). Options: k, seed (image i's sample s
   * uses normals (i k + s) latent_dim .. of the seed's stream eps, docs/noise.md) or eps (k x n x latent_dim
   * numbers), bitsPerDim (the score divided by C H W ln 2), start (the index of x's first image in a set scored in
   * chunks: its noise is image start + i's).
   */
  async score(x, { k = 1, seed, eps, bitsPerDim = false, start = 0 } = {}) {
    x = images(x, undefined, this._shape);
    k = checkCount(k, 'k');
    if (!(Number.isSafeInteger(start) && start >= 0)) {
      throw new RuntimeInputError(`start must be an integer >= 0, got ${show(start)}`);
    }
    const n = x.length / this._pixels;
    if (eps !== undefined) {
      if (!(Array.isArray(eps) || (ArrayBuffer.isView(eps) && !(eps instanceof DataView)))) {
        throw new RuntimeInputError(`eps must be a Float32Array or an array of numbers (k x n x latent_dim), got ${show(eps)}`);
      }
      eps = Float32Array.from(eps);
      if (!eps.every(Number.isFinite)) throw new RuntimeInputError('eps contains NaN or inf');
      if (eps.length !== k * n * this._latent) {
        throw new RuntimeInputError(`eps has ${eps.length} numbers; expected k x n x latent_dim = ${k} x ${n} x ` +
          `${this._latent} = ${k * n * this._latent}`);
      }
    } else seed = checkSeed(seed);
    const nats = await this._score.nats(x, n, k, seed, eps, start, this.constructor.backend.ort.Tensor);
    if (bitsPerDim) for (let i = 0; i < n; i++) nats[i] /= this._pixels * Math.LN2;
    return nats;
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
    a = images(a, undefined, this._shape, 'a');
    b = images(b, undefined, this._shape, 'b');
    if (a.length !== b.length) {
      throw new RuntimeInputError(`a and b hold different numbers of images: ${a.length / this._pixels} vs ${b.length / this._pixels}`);
    }
    this._needEncoder();
    const [mu1, mu2] = [(await this._encode(a)).mu, (await this._encode(b)).mu];
    const d = mu1.length;
    const z = new Float32Array(steps * d);
    const f = Math.fround, step = 1 / (steps - 1);
    for (let s = 0; s < steps; s++) {
      const t = s === steps - 1 ? 1 : f(s * step); // as numpy's linspace(0, 1, steps, dtype=float32)
      for (let i = 0; i < d; i++) z[s * d + i] = f(f(f(1 - t) * mu1[i]) + f(t * mu2[i]));
    }
    return this.decode(z);
  }

  _needEncoder() {
    if (!this.encoder) throw new RuntimeInputError('this VAE was loaded with decoderOnly: true; load it without to encode');
  }

  async _decodeChunk(z, m) {
    const { Tensor } = this.constructor.backend.ort;
    const [x] = this.decoder.outputNames;
    const out = await this.decoder.run({ [this.decoder.inputNames[0]]: new Tensor('float32', z, [m, this._latent]) },
      { [x]: [m, ...this._shape] });
    return out[x].data;
  }

  async _encodeChunk(x, m) {
    const { Tensor } = this.constructor.backend.ort;
    const out = await this.encoder.run({ [this.encoder.inputNames[0]]: new Tensor('float32', x, [m, ...this._shape]) },
      { mu: [m, this._latent], logvar: [m, this._latent] });
    return { mu: out.mu.data, logvar: out.logvar.data };
  }
}

// A chunk of a flat array: the array itself when it is all of it.
const part = (a, start, length) => (start === 0 && length === a.length ? a : a.slice(start, start + length));
