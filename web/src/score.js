// A folder's score.onnx (as runtime/prior.py's log_likelihood in Python): images and noise in, IWAE log-weights
// log w [k, n] out, summed per image by a running logsumexp in float64. The noise is explicit or the seed's
// (random.js, docs/noise.md): image i's sample s uses normals (i k + s) latent_dim .. of stream eps, so an image's
// score depends on it alone, not on the images passed with it or on how the work is split into runs.

import { gaussian } from './random.js';

const IMAGES_PER_SCORE = 100; // images per score.onnx run, as runtime/prior.py
const DECODES_PER_SCORE = 4096; // samples x images per run, as runtime/prior.py

/** log(exp(a) + exp(b)) in float64, -Infinity included (numpy's logaddexp). */
const logaddexp = (a, b) => {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  return Math.max(a, b) + Math.log1p(Math.exp(-Math.abs(a - b)));
};

export class Score {
  /** open: async () -> score.onnx's checked session (vae.js), made on first use; folder: the ModelFolder
   * (folder.js) it scores for. */
  constructor(open, folder) {
    this._open = open;
    this._session = null;
    this._shape = folder.inputShape;
    this._latent = folder.latentDim;
    this.binarized = folder.binarized;
  }

  /** The session, opened once; a failed open is tried again on the next call (as Python's). */
  async session() {
    if (!this._session) this._session = this._open().catch((e) => { this._session = null; throw e; });
    return this._session;
  }

  /** -log p(x) per image (Float64Array, nats): x n images in [0, 1], k samples, eps [k, n, latent] or a seed's
   * noise for images start .. start + n - 1. */
  async nats(x, n, k, seed, eps, start, Tensor) {
    const session = await this.session();
    const pixels = x.length / n, d = this._latent;
    if (this.binarized) x = x.map((v) => (v >= 0.5 ? 1 : 0));
    const out = new Float64Array(n);
    for (let i = 0; i < n; i += IMAGES_PER_SCORE) {
      const nb = Math.min(IMAGES_PER_SCORE, n - i), chunk = Math.max(1, Math.floor(DECODES_PER_SCORE / nb));
      const xb = new Tensor('float32', x.subarray(i * pixels, (i + nb) * pixels), [nb, ...this._shape]);
      const acc = new Float64Array(nb).fill(-Infinity);
      for (let j = 0; j < k; j += chunk) {
        const m = Math.min(chunk, k - j), e = new Float32Array(m * nb * d);
        for (let b = 0; b < nb; b++) {
          // image i + b's samples j .. j + m - 1, each d numbers, into e's [s, b] rows
          const own = eps ? null : gaussian(m * d, seed, ((start + i + b) * k + j) * d);
          for (let s = 0; s < m; s++) {
            e.set(own ? own.subarray(s * d, (s + 1) * d)
              : eps.subarray(((j + s) * n + i + b) * d, ((j + s) * n + i + b + 1) * d), (s * nb + b) * d);
          }
        }
        const lw = (await session.run({ x: xb, eps: new Tensor('float32', e, [m, nb, d]) }, { log_w: [m, nb] })).log_w.data;
        for (let b = 0; b < nb; b++) {
          let top = -Infinity, sum = 0;
          for (let s = 0; s < m; s++) top = Math.max(top, lw[s * nb + b]);
          for (let s = 0; s < m; s++) sum += Math.exp(lw[s * nb + b] - top);
          acc[b] = logaddexp(acc[b], top + Math.log(sum));
        }
      }
      for (let b = 0; b < nb; b++) out[i + b] = -(acc[b] - Math.log(k));
    }
    return out;
  }
}
