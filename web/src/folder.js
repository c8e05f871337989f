// The model folder (docs/format.md): vae.json, read and checked, and the files it lists, each checked against its
// size and sha256 (as runtime/folder.py in Python). tests/conformance/ holds the cases every reader must accept or
// refuse alike. A backend gives {join(folder, name), open(where, folder)}: node-files.js (Node and build.mjs) and
// openUrl below (the browser, and URLs in Node). open resolves to a file {inside, regular, size, read(n), close()}:
// inside false when its real path leaves the folder's (then nothing is opened), size undefined where the backend
// cannot tell before reading, read(n) -> {data: at most n bytes, more: whether the file holds more}.

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

export const META_LIMIT = 2 ** 20; // vae.json's size limit: exports write a few KiB
export const MAX_NESTING = 32; // vae.json's arrays and objects nest at most this deep (exports: 4)
const BYTES_LIMIT = 2 ** 31; // files[*].bytes: an integer in [0, 2^31)

/** A file over http(s) as open() gives it: its Content-Length where the body is sent as is, and a body read with a
 * cap (never more than asked for plus one chunk). A missing one is a ModelFolderError (status 404 for readMeta). */
export async function openUrl(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new ModelFolderError(`cannot read ${url}: ${oneLine(e)}`);
  }
  if (!response.ok) {
    response.body?.cancel().catch(() => {});
    const e = new ModelFolderError(`cannot read ${url}: HTTP ${response.status}`);
    e.status = response.status;
    throw e;
  }
  // A compressed body's Content-Length counts the compressed bytes, not the ones fetch gives.
  const length = response.headers.get('Content-Length');
  const plain = (response.headers.get('Content-Encoding') ?? 'identity').trim().toLowerCase() === 'identity';
  const reader = response.body?.getReader();
  return {
    inside: true, // a plain path joined to the folder's URL stays under it; the server owns the rest
    regular: true,
    size: plain && length !== null && /^\d+$/.test(length.trim()) ? Number(length) : undefined,
    read: async (n) => {
      const chunks = [];
      let total = 0;
      while (reader && total <= n) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        total += value.length;
      }
      const data = new Uint8Array(Math.min(total, n));
      let at = 0;
      for (const c of chunks) {
        data.set(c.subarray(0, data.length - at), at);
        at += Math.min(c.length, data.length - at);
      }
      return { data, more: total > n };
    },
    close: async () => reader?.cancel().catch(() => {}),
  };
}

/** The bytes of the file at `where` (rule F1 of docs/format.md): its real path inside the folder's, a regular file
 * (never a FIFO or a device: nothing hangs or reads without end), of exactly `bytes` bytes (files) or at most
 * `limit` (vae.json), both checked before reading, and a read never past the size it expects. */
async function readInside(backend, folder, where, { bytes, limit }) {
  const file = await backend.open(where, folder);
  if (!file.inside) throw new ModelFolderError(`${where} resolves outside the model folder`);
  try {
    if (!file.regular) throw new ModelFolderError(`${where} is not a regular file`);
    if (limit !== undefined) {
      const tooLarge = new ModelFolderError(`${where} is larger than 1 MiB, the limit for vae.json`);
      if (file.size > limit) throw tooLarge;
      const { data, more } = await file.read(limit);
      if (more) throw tooLarge;
      return data;
    }
    if (file.size !== undefined && file.size !== bytes) throw wrongSize(where, file.size, bytes);
    const { data, more } = await file.read(bytes); // a file that grew or shrank since: the same refusal
    if (more || data.length !== bytes) throw wrongSize(where, more ? `more than ${bytes}` : data.length, bytes);
    return data;
  } finally {
    await file.close();
  }
}

const wrongSize = (where, n, bytes) => new ModelFolderError(`${where} has ${n} bytes; vae.json says ${bytes}`);

/** Whether JSON text nests arrays and objects deeper than `limit`: '[' and '{' counted outside strings, before any
 * parser runs (so no parser recurses deeper). Bytes: '"', '\\', '[' and '{' never occur inside a UTF-8 sequence. */
export function nestedDeeper(bytes, limit = MAX_NESTING) {
  let depth = 0, inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (inString) {
      if (b === 0x5c) i++; // a backslash escapes the next byte
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) inString = true;
    else if (b === 0x5b || b === 0x7b) {
      if (++depth > limit) return true;
    } else if (b === 0x5d || b === 0x7d) depth--;
  }
  return false;
}

const size = (v) => Number.isInteger(v) && v > 0 && v < SIZE_LIMIT;
/** A JSON object: not null, not an array (Python's dict, C's cJSON_IsObject). */
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The bytes of a folder's vae.json: a regular file inside it, at most 1 MiB, nested at most 32 levels. */
export async function metaBytes(backend, folder) {
  const where = backend.join(folder, 'vae.json');
  let bytes;
  try {
    bytes = await readInside(backend, folder, where, { limit: META_LIMIT });
  } catch (e) {
    if (e?.code === 'ENOENT' || e?.code === 'ENOTDIR' || e?.status === 404) {
      throw new ModelFolderError(`no exported model at ${folder}; run \`vae-export model.pt --out ${folder}\` first`);
    }
    throw e instanceof ModelFolderError ? e : new ModelFolderError(`cannot read ${where}: ${oneLine(e)}`);
  }
  if (nestedDeeper(bytes)) throw new ModelFolderError(`${where} is nested deeper than ${MAX_NESTING} levels`);
  return bytes;
}

/** vae.json of a folder, checked: strict JSON (UTF-8, no byte order mark), this format and version, the sizes. */
export async function readMeta(backend, folder) {
  const where = backend.join(folder, 'vae.json');
  const bytes = await metaBytes(backend, folder);
  let meta;
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

/** Where files[key] is, refusing an entry without a path, sha256 and bytes, and a path that is not plain. */
export function filePath(backend, folder, meta, key) {
  const entry = meta.files[key];
  const where = backend.join(folder, 'vae.json');
  if (!entry || typeof entry.path !== 'string' || typeof entry.sha256 !== 'string'
    || !(Number.isInteger(entry.bytes) && entry.bytes >= 0 && entry.bytes < BYTES_LIMIT)) {
    throw new ModelFolderError(`${where} lists no ${key} file (path, sha256 and bytes)`);
  }
  // The path comes from a file we do not control: keep it inside the folder, and the same on every system.
  if (!PLAIN_PATH.test(entry.path)) {
    throw new ModelFolderError(`${where}: ${key} path '${entry.path}' is not a plain path inside the model folder ` +
      '(parts of letters, digits, . _ - joined by /)');
  }
  return backend.join(folder, entry.path);
}

/** The bytes of files[key], refusing a missing file, one that is not a regular file inside the folder, or one whose
 * size or sha256 differs from vae.json. */
export async function checkFile(backend, folder, meta, key) {
  const path = filePath(backend, folder, meta, key);
  let bytes;
  try {
    bytes = await readInside(backend, folder, path, { bytes: meta.files[key].bytes });
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
