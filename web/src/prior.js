// A format-2 folder's learned prior (prior.onnx), as runtime/prior.py in Python: noise in, the decoder's z out.
//
// prior.onnx takes eps (n x latent_dim, standard normal; temperature scales it) and, for a mixture (the
// VampPrior), u (n, uniform in [0, 1); the component is floor(u K), never scaled by temperature). Both come from
// one seed (random.js, docs/noise.md): eps as a Gaussian-prior model's latents, u from the generator's stream u.

import { gaussian, uniform } from './random.js';

/** The noise of n samples from a seed: eps (temperature-scaled: float32 of the double product) and u. */
export function noise(n, latent, seed, temperature) {
  const eps = gaussian(n * latent, seed);
  for (let i = 0; i < eps.length; i++) eps[i] *= temperature;
  return { eps, u: uniform(n, seed) };
}

export class Prior {
  /** session: prior.onnx's onnxruntime session; folder: the ModelFolder (folder.js) whose prior it is. */
  constructor(session, folder) {
    this.session = session;
    this.name = folder.prior.name;
    this.inputs = Object.keys(folder.prior.sample.inputs);
  }

  /** z (n x latent) for noise eps (n x latent) and u (n). */
  async z(eps, u, n, latent, Tensor) {
    const feed = { eps: new Tensor('float32', eps, [n, latent]) };
    if (this.inputs.includes('u')) feed.u = new Tensor('float32', Float32Array.from(u), [n]);
    return (await this.session.run(feed, { z: [n, latent] })).z.data;
  }
}
