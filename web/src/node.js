// vae-edge in Node.js: the VAE of vae.js on onnxruntime-node, reading a model folder from disk (or http(s)).
//
//   import { VAE } from 'vae-edge';
//   const vae = await VAE.load('vae-onnx');
//   const images = await vae.sample(64, { seed: 0 });   // Float32Array, 64 x C x H x W

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openFile } from './node-files.js';
import { sessionOptions } from './sessions.js';
import { VAE as BaseVAE, openUrl } from './vae.js';

// onnxruntime-node is an optional peer: an app that did not install it gets a line naming it, not Node's raw error.
const ort = await import('onnxruntime-node').catch((e) => {
  if (e?.code !== 'ERR_MODULE_NOT_FOUND' || !e.message.includes("'onnxruntime-node'")) throw e;
  throw new Error('vae-edge in Node.js needs onnxruntime-node: npm install onnxruntime-node');
});

export { ModelFolderError, RuntimeInputError } from './vae.js';
export { ort };

const isUrl = (where) => /^https?:\/\//i.test(where);

export class VAE extends BaseVAE {
  static backend = {
    ort,
    join: (folder, name) => {
      if (isUrl(folder)) return new URL(name, `${folder}/`).href;
      return path.join(folder.startsWith('file:') ? fileURLToPath(folder) : folder, name);
    },
    open: (where, folder) => (isUrl(where) ? openUrl(where) : openFile(where, folder)),
    session: (bytes, threads) => ort.InferenceSession.create(bytes, sessionOptions(['cpu'], threads)),
  };
}
