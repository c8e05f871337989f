// vae-edge in Node.js (src/node.js): the VAE on onnxruntime-node, reading a model folder from disk or http(s).
import * as ort from 'onnxruntime-node';
import { VAE as BaseVAE } from './vae.js';

export { ModelFolderError, RuntimeInputError } from './vae.js';
export type { LoadOptions, ModelMeta, Numbers, Precision, SampleOptions, ScoreOptions } from './vae.js';
export { ort };

export declare class VAE extends BaseVAE {
  static load(folder?: string, options?: import('./vae.js').LoadOptions): Promise<VAE>;
}
