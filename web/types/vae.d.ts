// The API shared by both entry points (src/vae.js): what `import { VAE } from 'vae-edge'` gives in Node.js
// (node.d.ts) and in a browser (browser.d.ts). Arrays are flat, in the Python runtime's layouts: z is
// (n, latentDim), images (n, C, H, W).

/** Bad input from the caller (length, NaN/inf, n <= 0, ...); the message is one line. */
export declare class RuntimeInputError extends Error {
  name: 'RuntimeInputError';
}

/** A model folder that is missing, tampered with, corrupt or inconsistent; the message is one line. */
export declare class ModelFolderError extends Error {
  name: 'ModelFolderError';
}

export type Precision = 'fp32' | 'int8';

/** Numbers to decode or encode: any array of numbers; images may also be a Uint8Array of 0..255. */
export type Numbers = Float32Array | Float64Array | Uint8Array | ArrayLike<number>;

export interface LoadOptions {
  /** 'fp32' (default) or 'int8' (the export's int8 files). */
  precision?: Precision;
  /** onnxruntime's threads (0 or unset: its default). In a browser, threads need a cross-origin isolated page. */
  threads?: number;
  /** Images per onnxruntime run (default 1024, at most 1048576). */
  batchSize?: number;
  /** Load and check the decoder alone: enough for decode and sample. */
  decoderOnly?: boolean;
}

export interface SampleOptions {
  /** The same seed gives the same noise on every machine and in every reader, Python and C too (docs/noise.md). */
  seed?: number;
  /** z = temperature * N(0, I); default 1. */
  temperature?: number;
}

export interface ScoreOptions {
  /** Importance samples per image, 1 to 1048576; default 1 (the negative ELBO). */
  k?: number;
  /** The noise's seed when eps is not given; left out, a fresh one. */
  seed?: number;
  /** Explicit noise, k x n x latentDim numbers ([sample, image, dimension], as Python's log_likelihood). */
  eps?: Numbers;
  /** Bits per dimension (nats / (C H W ln 2)) instead of nats per image. */
  bitsPerDim?: boolean;
  /** The index of the first image in a set scored in chunks (its noise is image start + i's); default 0. */
  start?: number;
}

/** vae.json: the keys every export has; others are kept as they are. */
export interface ModelMeta {
  format: 'vae-edge-onnx';
  format_version: number;
  model: { input_shape: [number, number, number]; latent_dim: number; arch?: string; [key: string]: unknown };
  /** bytes: the file's exact size, required (a file of another size is refused before it is read). */
  files: Record<string, { path: string; sha256: string; bytes: number }>;
  [key: string]: unknown;
}

export declare class VAE {
  /**
   * Load an export folder (a path in Node, a URL in the browser), refusing files whose sha256 differs from
   * vae.json. Rejects with ModelFolderError or RuntimeInputError.
   */
  static load(folder?: string, options?: LoadOptions): Promise<VAE>;

  readonly precision: Precision;
  batchSize: number;
  get latentDim(): number;
  /** [C, H, W] */
  get inputShape(): [number, number, number];
  /** vae.json (a copy). */
  get meta(): ModelMeta;

  /** z (n x latentDim numbers) -> pixel probabilities, n x C x H x W in [0, 1]. n: checked against z's length. */
  decode(z: Numbers, n?: number): Promise<Float32Array>;
  /** n images (floats in [0, 1], or a Uint8Array of 0..255) -> mu and logvar, each n x latentDim. */
  encode(x: Numbers, n?: number): Promise<{ mu: Float32Array; logvar: Float32Array }>;
  /** The prior: 'gaussian' (N(0, I)) or 'vamp' (a format-2 folder's learned prior); vae.json's prior says more. */
  readonly prior: string;
  /**
   * n latents from a seeded generator: the z that sample(n, same options) decodes. z = temperature * N(0, I), or,
   * with a learned prior or two layers, prior.onnx(temperature * eps, u). Async: it may run a graph.
   */
  latents(n: number, options?: SampleOptions): Promise<Float32Array>;
  /** The z that sample() decodes for given noise: eps (n x latentDim) and, for a mixture, u (n numbers in [0, 1)). */
  fromNoise(eps: Numbers, u?: Numbers | null, n?: number): Promise<Float32Array>;
  /** n images (1 <= n <= 1048576 per call), n x C x H x W in [0, 1], decoded from latents(n, options). */
  sample(n: number, options?: SampleOptions): Promise<Float32Array>;
  /**
   * Each image's score in nats (higher: less likely under the model): the negative ELBO at k = 1, the negative
   * IWAE bound for k > 1, from the folder's score.onnx (read and checked on the first score; a folder without one is
   * a ModelFolderError). A binarized model's images are binarized at 0.5 first. The noise is options.eps
   * (k x n x latentDim numbers) or the seed's (docs/noise.md: the same numbers as Python and C).
   */
  score(x: Numbers, options?: ScoreOptions): Promise<Float64Array>;
  /** decode(mu(x)): probabilities of the same length as x. */
  reconstruct(x: Numbers, n?: number): Promise<Float32Array>;
  /**
   * Decode `steps` points on the line from mu(a) to mu(b), both ends included: one image each
   * (-> steps x C x H x W) or the same number of images (-> steps x n x C x H x W).
   */
  interpolate(a: Numbers, b: Numbers, steps?: number): Promise<Float32Array>;
}
