// vae-edge in a browser (src/browser.js): the VAE on onnxruntime-web (WebAssembly), reading a model folder by URL.
import * as ort from 'onnxruntime-web';
import { VAE as BaseVAE } from './vae.js';

export { ModelFolderError, RuntimeInputError } from './vae.js';
export type { LoadOptions, ModelMeta, Numbers, Precision, SampleOptions, ScoreOptions } from './vae.js';
export { ort };

export declare class VAE extends BaseVAE {
  static load(folder?: string, options?: import('./vae.js').LoadOptions): Promise<VAE>;
}
