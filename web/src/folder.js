// The model folder (docs/format.md): vae.json, read and checked, and the files it lists, each checked against its
// size and sha256 (as runtime/folder.py in Python). tests/conformance/ holds the cases every reader must accept or
// refuse alike. A backend gives {join(folder, name), open(where, folder)}: node-files.js (Node and build.mjs) and
// openUrl below (the browser, and URLs in Node). open resolves to a file {inside, regular, size, read(n), close()}:
// inside false when its real path leaves the folder's (then nothing is opened), size undefined where the backend
// cannot tell before reading, read(n) -> {data: at most n bytes, more: whether the file holds more}.

import { ModelFolderError, message, oneLine, show } from './errors.js';
import { RULES } from './format_rules.js';
import { sha256 } from './sha256.js';

export const FORMAT = RULES.format;
export const FORMAT_VERSION = RULES.format_version_written; // what a Gaussian-prior export writes
export const FORMAT_VERSIONS = Object.keys(RULES.format_versions).map(Number); // what this library reads

/** Why this library cannot read the folder's format version (naming the vae-edge it needs), or null. */
export function formatProblem(meta, path = 'vae.json') {
  const version = meta.format_version;
  if (FORMAT_VERSIONS.includes(version)) return null;
  const newest = FORMAT_VERSIONS.at(-1);
  if (Number.isInteger(version) && version > newest) {
    return meta.min_vae_edge ? message('version_newer_needs', { path, version, newest, need: meta.min_vae_edge, how: '' })
      : message('version_newer', { path, version, newest });
  }
  return message('version_other', { path, version: show(version), versions: FORMAT_VERSIONS.join(', ') });
}

/** The files a folder of this format version loads beside the precision's (format 2: prior). */
export const loads = (meta) => RULES.format_versions[meta.format_version].loads;
export const PRECISIONS = RULES.precisions;
// A path in files[*].path: parts of letters, digits, '.', '_' and '-' (none starting with '.') joined by '/'.
const PART = `[${RULES.path_part.first}][${RULES.path_part.rest}]*`;
const PLAIN_PATH = new RegExp(`^${PART}(${RULES.path_part.separator}${PART})*$`);
const SIZE_LIMIT = RULES.limits.size_below; // input_shape and latent_dim: positive integers below this

export const META_LIMIT = RULES.limits.meta_bytes; // vae.json's size limit: exports write a few KiB
export const MAX_NESTING = RULES.limits.meta_depth; // vae.json's arrays and objects nest at most this deep
const BYTES_LIMIT = RULES.limits.size_below; // files[*].bytes: an integer in [0, 2^31)

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
  if (!file.inside) throw new ModelFolderError(message('outside', { path: where }));
  try {
    if (!file.regular) throw new ModelFolderError(message('not_regular', { path: where }));
    if (limit !== undefined) {
      const tooLarge = new ModelFolderError(message('meta_too_large', { path: where }));
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

const wrongSize = (path, size, bytes) => new ModelFolderError(message('wrong_size', { path, size, bytes }));

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
      throw new ModelFolderError(message('missing', { folder }));
    }
    throw e instanceof ModelFolderError ? e : new ModelFolderError(`cannot read ${where}: ${oneLine(e)}`);
  }
  if (nestedDeeper(bytes)) throw new ModelFolderError(message('meta_too_deep', { path: where, depth: MAX_NESTING }));
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
    throw new ModelFolderError(message('not_json', { path: where, reason: `: ${oneLine(e)}` }));
  }
  if (meta?.format !== FORMAT) throw new ModelFolderError(message('meta_not_format', { path: where, format: FORMAT }));
  if (formatProblem(meta, where)) throw new ModelFolderError(formatProblem(meta, where));
  const shape = meta.model?.input_shape;
  if (!(Array.isArray(shape) && shape.length === 3 && shape.every(size) && size(meta.model.latent_dim)
    && isObject(meta.files))) {
    throw new ModelFolderError(message('meta_invalid', { path: where }));
  }
  const noise = meta.prior?.sample?.inputs;
  if (loads(meta).includes('prior') && !(typeof meta.prior?.name === 'string' && isObject(noise) && isObject(noise.eps)
    && Object.keys(noise).every((k) => k === 'eps' || k === 'u'))) {
    throw new ModelFolderError(message('no_prior', { path: where, version: meta.format_version }));
  }
  return meta;
}

/** Where files[key] is, refusing an entry without a path, sha256 and bytes, and a path that is not plain. */
export function filePath(backend, folder, meta, key) {
  const entry = meta.files[key];
  const where = backend.join(folder, 'vae.json');
  if (!entry || typeof entry.path !== 'string' || typeof entry.sha256 !== 'string'
    || !(Number.isInteger(entry.bytes) && entry.bytes >= 0 && entry.bytes < BYTES_LIMIT)) {
    throw new ModelFolderError(message('no_entry', { meta: where, key }));
  }
  // The path comes from a file we do not control: keep it inside the folder, and the same on every system.
  if (!PLAIN_PATH.test(entry.path)) {
    throw new ModelFolderError(message('not_plain', { meta: where, key, name: entry.path }));
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
    throw new ModelFolderError(message('sha256', { path }));
  }
  return bytes;
}

/** The keys of the files that precision loads, refusing a folder without them (saying why where it knows). */
export function precisionFiles(folder, meta, precision) {
  const keys = PRECISIONS[precision];
  if (precision === 'int8' && !keys.every((k) => Object.hasOwn(meta.files, k))) {
    if (meta.int8 && typeof meta.int8 === 'object' && !Object.hasOwn(meta.int8, 'method')) {
      throw new ModelFolderError(message('int8_over_bound', { folder, fp32: "precision 'fp32'" }));
    }
    throw new ModelFolderError(message('int8_missing', { folder, fp32: "precision 'fp32'" }));
  }
  return keys;
}
