// vae-edge in the browser: the VAE of vae.js on onnxruntime-web (WebAssembly), reading a model folder by URL.
//
//   import { VAE } from './vae-edge/browser.js';   // with an import map naming 'onnxruntime-web'
//   const vae = await VAE.load('model/', { threads: 2 });
//   const images = await vae.sample(64, { seed: 0 });
//
// onnxruntime-web runs threads only in a cross-origin isolated page (COOP/COEP headers: see web/serve.mjs);
// elsewhere it runs one. Its thread count is set once, by the first load.

import * as ort from 'onnxruntime-web';
import { sessionOptions } from './sessions.js';
import { VAE as BaseVAE, openUrl } from './vae.js';

export { ModelFolderError, RuntimeInputError } from './vae.js';
export { ort };

export class VAE extends BaseVAE {
  static backend = {
    ort,
    join: (folder, name) => new URL(name, new URL(`${folder}/`, globalThis.document?.baseURI ?? globalThis.location?.href)).href,
    open: openUrl,
    session: (bytes, threads) => {
      if (threads) ort.env.wasm.numThreads = threads;
      return ort.InferenceSession.create(bytes, sessionOptions(['wasm']));
    },
  };
}
