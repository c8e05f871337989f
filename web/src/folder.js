// The model folder (docs/format.md): vae.json, read and checked, and the files it lists, each checked against its
// sha256 (as runtime/folder.py in Python). tests/conformance/ holds the cases every reader must accept or refuse
// alike. A backend gives {join(folder, name), read(where) -> Uint8Array}: node.js, browser.js and build.mjs.

import { ModelFolderError, oneLine, show } from './errors.js';
import { sha256 } from './sha256.js';

export const FORMAT = 'vae-edge-onnx';
export const FORMAT_VERSION = 1; // what a Gaussian-prior export writes
export const FORMAT_VERSIONS = [1, 2]; // what this library reads: 2 adds prior.onnx and score.onnx

/** Why this library cannot read the folder's format version (naming the vae-edge it needs), or null. */
export function formatProblem(meta) {
  const v = meta.format_version;
  if (FORMAT_VERSIONS.includes(v)) return null;
  const newest = FORMAT_VERSIONS.at(-1);
  if (Number.isInteger(v) && v > newest) {
    return `has format_version ${v}, newer than this vae-edge reads (up to ${newest}); ` +
      (meta.min_vae_edge ? `it needs vae-edge >= ${meta.min_vae_edge}` : 'upgrade vae-edge');
  }
  return `has format_version ${show(v)}; this vae-edge reads versions ${FORMAT_VERSIONS.join(', ')}`;
}
export const PRECISIONS = { fp32: ['encoder', 'decoder'], int8: ['encoder_int8', 'decoder_int8'] };
// A path in files[*].path: parts of letters, digits, '.', '_' and '-' (none starting with '.') joined by '/'.
const PLAIN_PATH = /^[A-Za-z0-9_][A-Za-z0-9._-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/;
const SIZE_LIMIT = 2 ** 31; // input_shape and latent_dim: positive integers below this

/** Read a file over http(s) as bytes; a missing one is a ModelFolderError. Both backends use it for URLs. */
export async function fetchBytes(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new ModelFolderError(`cannot read ${url}: ${oneLine(e)}`);
  }
  if (!response.ok) {
    const e = new ModelFolderError(`cannot read ${url}: HTTP ${response.status}`);
    e.status = response.status;
    throw e;
  }
  return new Uint8Array(await response.arrayBuffer());
}

const size = (v) => Number.isInteger(v) && v > 0 && v < SIZE_LIMIT;
/** A JSON object: not null, not an array (Python's dict, C's cJSON_IsObject). */
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** vae.json of a folder, checked: strict JSON (UTF-8, no byte order mark), this format and version, the sizes. */
export async function readMeta(backend, folder) {
  const where = backend.join(folder, 'vae.json');
  let bytes, meta;
  try {
    bytes = await backend.read(where);
  } catch (e) {
    if (e?.code === 'ENOENT' || e?.code === 'ENOTDIR' || e?.status === 404) {
      throw new ModelFolderError(`no exported model at ${folder}; run \`vae-export model.pt --out ${folder}\` first`);
    }
    throw e instanceof ModelFolderError ? e : new ModelFolderError(`cannot read ${where}: ${oneLine(e)}`);
  }
  try {
    meta = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes));
  } catch (e) {
    throw new ModelFolderError(`${where} is not readable JSON (corrupt?): ${oneLine(e)}`);
  }
  if (meta?.format !== FORMAT) throw new ModelFolderError(`${where} is not a vae-edge ONNX export (format should be '${FORMAT}')`);
  if (formatProblem(meta)) throw new ModelFolderError(`${where} ${formatProblem(meta)}`);
  const shape = meta.model?.input_shape;
  if (!(Array.isArray(shape) && shape.length === 3 && shape.every(size) && size(meta.model.latent_dim)
    && isObject(meta.files))) {
    throw new ModelFolderError(`${where} lacks valid model.input_shape, model.latent_dim or files`);
  }
  const noise = meta.prior?.sample?.inputs;
  if (meta.format_version === 2 && !(typeof meta.prior?.name === 'string' && isObject(noise) && isObject(noise.eps)
    && Object.keys(noise).every((k) => k === 'eps' || k === 'u'))) {
    throw new ModelFolderError(`${where} has format_version 2 but no valid prior (name, and sample.inputs naming eps) (docs/priors.md)`);
  }
  return meta;
}

/** Where files[key] is, refusing an entry without a path and sha256, and a path that is not plain. */
export function filePath(backend, folder, meta, key) {
  const entry = meta.files[key];
  const where = backend.join(folder, 'vae.json');
  if (!entry || typeof entry.path !== 'string' || typeof entry.sha256 !== 'string') {
    throw new ModelFolderError(`${where} lists no ${key} file`);
  }
  // The path comes from a file we do not control: keep it inside the folder, and the same on every system.
  if (!PLAIN_PATH.test(entry.path)) {
    throw new ModelFolderError(`${where}: ${key} path '${entry.path}' is not a plain path inside the model folder ` +
      '(parts of letters, digits, . _ - joined by /)');
  }
  return backend.join(folder, entry.path);
}

/** The bytes of files[key], refusing a missing file or one whose sha256 differs from vae.json. */
export async function checkFile(backend, folder, meta, key) {
  const path = filePath(backend, folder, meta, key);
  let bytes;
  try {
    bytes = await backend.read(path);
  } catch (e) {
    throw e instanceof ModelFolderError ? e : new ModelFolderError(`cannot read ${path}: ${oneLine(e)}`);
  }
  if ((await sha256(bytes)) !== meta.files[key].sha256) {
    throw new ModelFolderError(`${path} does not match the sha256 in vae.json (tampered or corrupt); refusing to load it`);
  }
  return bytes;
}

/** The keys of the files that precision loads, refusing a folder without them (saying why where it knows). */
export function precisionFiles(folder, meta, precision) {
  const keys = PRECISIONS[precision];
  if (precision === 'int8' && !keys.every((k) => Object.hasOwn(meta.files, k))) {
    if (meta.int8 && typeof meta.int8 === 'object' && !Object.hasOwn(meta.int8, 'method')) {
      throw new ModelFolderError(`${folder} has no int8 files: at export their error against fp32 was over the bound ` +
        "(vae-info shows it); use precision 'fp32'");
    }
    throw new ModelFolderError(`${folder} has no int8 files; re-export with \`vae-export ... --quantize int8\` ` +
      "or use precision 'fp32'");
  }
  return keys;
}
