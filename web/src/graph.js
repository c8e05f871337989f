// The graph contract (docs/format.md), as runtime/graph.py: the decoder maps z [batch, latent_dim] -> x [batch, C,
// H, W], the encoder x -> mu, logvar [batch, latent_dim] (outputs named so), with the sizes vae.json says; in
// format 2, prior.onnx maps eps [batch, latent_dim] (and u [batch], as vae.json's prior.sample.inputs names them)
// -> z [batch, latent_dim], all float32 (rule G2).

import { message, ModelFolderError } from './errors.js';

// Static dims of an input or output past the batch axis; a symbolic dim is null.
const dims = (m) => (m?.shape ?? []).slice(1).map((d) => (typeof d === 'number' && d >= 0 ? d : null));
const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

function checkDecoder(decoder, shape, name) {
  const [ins, outs] = [decoder.inputNames.length, decoder.outputNames.length];
  if (ins !== 1 || outs !== 1) {
    throw new ModelFolderError(message('not_decoder', { path: name, inputs: ins, outputs: outs,
      swapped: ins === 1 && outs === 2 ? message('swapped') : '' }));
  }
  const [xOut] = decoder.outputMetadata;
  if (!same(dims(xOut), shape)) {
    throw new ModelFolderError(message('decoder_shape', { path: name, got: `[${xOut.shape}]`, shape: `[${shape}]` }));
  }
  return dims(decoder.inputMetadata[0]);
}

function checkEncoder(encoder, shape, name) {
  const [ins, outs] = [encoder.inputNames.length, encoder.outputNames.length];
  if (ins !== 1 || outs !== 2) {
    throw new ModelFolderError(message('not_encoder', { path: name, inputs: ins, outputs: outs,
      swapped: ins === 1 && outs === 1 ? message('swapped') : '' }));
  }
  const names = [...encoder.outputNames].sort();
  if (!same(names, ['logvar', 'mu'])) {
    throw new ModelFolderError(message('encoder_names', { path: name, names: names.join(', ') }));
  }
  const [xIn] = encoder.inputMetadata;
  if (!same(dims(xIn), shape)) {
    throw new ModelFolderError(message('encoder_shape', { path: name, got: `[${xIn.shape}]`, shape: `[${shape}]` }));
  }
  return encoder.outputMetadata.map((out) => [out.name, dims(out)]);
}

/** Refuse networks that disagree with the folder (its input shape [C, H, W] and latent size) or with each other;
 * encoder may be null. Messages name the folder. */
export function checkPair(encoder, decoder, folder) {
  const { inputShape: shape, latentDim: latent, path: name } = folder;
  const zDims = checkDecoder(decoder, shape, name);
  if (!same(zDims, [latent])) {
    throw new ModelFolderError(message('decoder_latent', { path: name, latent, got: `[${zDims}]` }));
  }
  for (const [out, d] of encoder ? checkEncoder(encoder, shape, name) : []) {
    if (!same(d, [latent])) {
      throw new ModelFolderError(`${name}: the encoder and vae.json disagree on latent_dim: vae.json says ${latent}, ` +
        `the encoder gives ${out} of [${d}]`);
    }
  }
}

/** Refuse a prior.onnx (session) that is not the prior the folder's vae.json describes. */
export function checkPrior(prior, folder) {
  const latent = folder.latentDim, where = folder.where('prior');
  const want = { eps: [latent], u: [], z: [latent] };
  const refuse = (what) => { throw new ModelFolderError(`${where} is not the prior vae.json describes: ${what}`); };
  const names = [...prior.inputNames].sort(), expected = Object.keys(folder.prior.sample.inputs).sort();
  if (!same(names, expected) || !same(prior.outputNames, ['z'])) {
    refuse(`it takes ${names.join(', ') || 'nothing'} and gives ${prior.outputNames.join(', ') || 'nothing'}; ` +
      `expected ${expected.join(', ')} -> z`);
  }
  for (const m of [...prior.inputMetadata, ...prior.outputMetadata]) {
    const d = want[m.name];
    if (m.type !== 'float32' || (m.shape ?? []).length !== d.length + 1 || !same(dims(m), d)) {
      refuse(`its ${m.name} is ${m.type} [${(m.shape ?? []).join(', ')}]; expected float32 [${['batch', ...d].join(', ')}]`);
    }
  }
}

// An input's or output's dims as every reader writes them, symbolic axes by name: [samples, batch, 32].
const written = (m) => `${m.name} ${m.type} [${(m.shape ?? []).join(', ')}]`;
// A dim that fits what is wanted: the number itself, or, where a name is wanted, any symbolic axis.
const fits = (d, w) => (typeof w === 'number' ? d === w : !(typeof d === 'number' && d >= 0));

/** Refuse a session whose inputs and outputs are not exactly `inputs` and `outputs` (name -> dims: numbers, and
 * names for symbolic axes), each float32, in runtime/graph.py's words: "WHERE is not the WHAT vae.json describes:
 * it maps ... -> ...; expected ... -> ...". */
function checkGraph(session, inputs, outputs, what, where) {
  const fit = (args, want) => same(args.map((a) => a.name).sort(), Object.keys(want).sort()) && args.every((a) =>
    a.type === 'float32' && (a.shape ?? []).length === want[a.name].length && a.shape.every((d, i) => fits(d, want[a.name][i])));
  const got = (args) => args.map(written).join(', ') || 'nothing';
  const want = (args) => Object.entries(args).map(([k, v]) => `${k} float32 [${v.join(', ')}]`).join(', ');
  if (!fit(session.inputMetadata, inputs) || !fit(session.outputMetadata, outputs)) {
    throw new ModelFolderError(message('not_described', { path: where, what, takes: got(session.inputMetadata),
      gives: got(session.outputMetadata), want_in: want(inputs), want_out: want(outputs) }));
  }
}

/** Refuse a score.onnx (session) that does not map x [batch, C, H, W], eps [samples, batch, latent_dim] -> log_w
 * [samples, batch] (rule G2), with the folder's input shape and latent size. */
export function checkScore(score, folder) {
  const shape = folder.inputShape, latent = folder.latentDim, where = folder.where('score');
  checkGraph(score, { x: ['batch', ...shape], eps: ['samples', 'batch', latent] }, { log_w: ['samples', 'batch'] },
    'score graph', where);
}
