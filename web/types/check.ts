// An app's use of the declared API, compiled (not run) by tsc: a declaration that does not fit it fails the check.
import { ModelFolderError, RuntimeInputError, VAE, ort, type LoadOptions } from 'vae-edge';
import * as browser from './browser.js';

const options: LoadOptions = { precision: 'int8', threads: 2, batchSize: 256, decoderOnly: false };
const vae: VAE = await VAE.load('vae-onnx', options);
const [c, h, w]: [number, number, number] = vae.inputShape;
const images: Float32Array = await vae.sample(64, { seed: 0, temperature: 0.8 });
const { mu, logvar }: { mu: Float32Array; logvar: Float32Array } = await vae.encode(images);
const x: Float32Array = await vae.decode(mu, 64);
const z: Float32Array = await vae.latents(4, { seed: 1 });
const prior: string = vae.prior;
const z0: Float32Array = await vae.fromNoise(new Float32Array(vae.latentDim), null, 1);
const scores: Float64Array = await vae.score(images, { k: 10, seed: 2, bitsPerDim: true });
const elbo: Float64Array = await vae.score(images.subarray(0, c * h * w), { eps: new Float32Array(vae.latentDim) });
const recon: Float32Array = await vae.reconstruct(new Uint8Array(c * h * w));
const frames: Float32Array = await vae.interpolate(images.subarray(0, c * h * w), x.subarray(0, c * h * w), 8);
const sizes: number[] = [vae.latentDim, vae.batchSize, logvar.length, z.length, recon.length, frames.length,
  scores.length, elbo.length];
const files: string[] = Object.values(vae.meta.files).map((f) => f.path);
const tensor: ort.Tensor = new ort.Tensor('float32', z, [4, vae.latentDim]);
try {
  await VAE.load('missing');
} catch (e) {
  if (e instanceof ModelFolderError || e instanceof RuntimeInputError) console.log(e.message.length);
}
const inBrowser: browser.VAE = await browser.VAE.load('model/', { threads: 1 });
const browserTensor: browser.ort.Tensor = new browser.ort.Tensor('float32', await inBrowser.sample(1), [1, 784]);
// @ts-expect-error: precision is 'fp32' or 'int8'
await VAE.load('vae-onnx', { precision: 'fp16' });
// @ts-expect-error: score's k is a number
await vae.score(images, { k: '10' });
// @ts-expect-error: sample's options are an object
await vae.sample(4, 0);
console.log(sizes, files, tensor.dims, browserTensor.dims, prior, z0.length);
