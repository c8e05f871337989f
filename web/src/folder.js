// The model folder (docs/format.md), as runtime/folder.py in Python: readFolder reads vae.json once and checks it by
// every rule, in order, into a ModelFolder, whose read(key) gives a file it lists, checked against its size and
// sha256. tests/conformance/ holds the cases every reader must accept or
// refuse alike. A backend gives {join(folder, name), open(where, folder)}: node-files.js (Node and build.mjs) and
// openUrl below (the browser, and URLs in Node). open resolves to a file {inside, regular, size, read(n), close()}:
// inside false when its real path leaves the folder's (then nothing is opened), size undefined where the backend
// cannot tell before reading, read(n) -> {data: at most n bytes, more: whether the file holds more}.

import { ModelFolderError, message, oneLine, show } from './errors.js';
import { RULES } from './format_rules.js';
import { sha256 } from './sha256.js';

export const FORMAT = RULES.format;
export const FORMAT_VERSION_WRITTEN = RULES.format_version_written; // what a Gaussian-prior export writes
export const FORMAT_VERSIONS = Object.keys(RULES.format_versions).map(Number); // what this library reads

/** Why this library cannot read the folder's format version (naming the vae-edge it needs), or null. */
function formatProblem(meta, path = 'vae.json') {
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
const loads = (meta) => RULES.format_versions[meta.format_version].loads;
export const PRECISIONS = RULES.precisions;
// A path in files[*].path: parts of letters, digits, '.', '_' and '-' (none starting with '.') joined by '/'.
const PART = `[${RULES.path_part.first}][${RULES.path_part.rest}]*`;
const PLAIN_PATH = new RegExp(`^${PART}(${RULES.path_part.separator}${PART})*$`);
const SIZE_LIMIT = RULES.limits.size_below; // input_shape and latent_dim: positive integers below this

export const META_LIMIT = RULES.limits.meta_bytes; // vae.json's size limit: exports write a few KiB
export const MAX_NESTING = RULES.limits.meta_depth; // vae.json's arrays and objects nest at most this deep
const BYTES_LIMIT = RULES.limits.size_below; // files[*].bytes: an integer in [0, 2^31)

/** A file over http(s) as open() gives it: its Content-Length where the body is sent as is, and a body read with a
 * cap (never more than asked for plus one chunk). A missing one is a ModelFolderError (status 404 for readFolder). */
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
function nestedDeeper(bytes, limit = MAX_NESTING) {
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
async function metaBytes(backend, folder, where) {
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

const BUILT = Symbol('readFolder'); // only readFolder builds a ModelFolder: one that exists has passed every rule

/** v with every array and object in it frozen (in place: vae.json's parse is the folder's own), so a folder's facts
 * cannot change once checked. */
const frozen = (v) => {
  if (v !== null && typeof v === 'object') {
    for (const x of Object.values(v)) frozen(x);
    Object.freeze(v);
  }
  return v;
};

/** The folder at `folder` (a path or URL the backend joins), read once: vae.json, checked by every rule of
 * docs/format.md in its order (strict JSON in UTF-8 without a byte order mark, this format and version, the sizes,
 * format 2's prior), into a ModelFolder. */
export async function readFolder(backend, folder) {
  const where = backend.join(folder, 'vae.json');
  const bytes = await metaBytes(backend, folder, where);
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
  return new ModelFolder(BUILT, backend, folder, where, meta, bytes);
}

/** A model folder as readFolder read it: what vae.json says, and its files, each read and checked when asked for.
 * Every field is read-only; the sessions, the VAE, the prior, the score and the site's builder take this object and
 * never read vae.json again. */
export class ModelFolder {
  #backend;
  #metaPath; // vae.json's path or URL, as messages name it

  constructor(token, backend, path, metaPath, meta, bytes) {
    if (token !== BUILT) throw new TypeError('a ModelFolder is built by readFolder(backend, folder)');
    this.#backend = backend;
    this.#metaPath = metaPath;
    this.path = path;
    this.meta = frozen(meta); // vae.json as parsed, for callers that print it
    this.metaBytes = bytes; // vae.json's bytes as read: the site's builder copies them unchanged
    this.formatVersion = meta.format_version;
    this.inputShape = Object.freeze(meta.model.input_shape.map(Number));
    this.latentDim = Number(meta.model.latent_dim);
    this.loads = Object.freeze([...loads(meta)]);
    this.prior = this.loads.includes('prior') ? this.meta.prior : null;
    // a --binarize model's likelihood is defined on 0/1 pixels (vae.json's recipe says how it was trained)
    this.binarized = meta.recipe?.binarize === true;
    Object.freeze(this);
  }

  /** Whether vae.json lists files[key]. */
  has(key) {
    return Object.hasOwn(this.meta.files, key);
  }

  /** Where files[key] is, refusing an entry without a path, sha256 and bytes, and a path that is not plain. */
  where(key) {
    const entry = this.has(key) ? this.meta.files[key] : undefined;
    if (!entry || typeof entry.path !== 'string' || typeof entry.sha256 !== 'string'
      || !(Number.isInteger(entry.bytes) && entry.bytes >= 0 && entry.bytes < BYTES_LIMIT)) {
      throw new ModelFolderError(message('no_entry', { meta: this.#metaPath, key }));
    }
    // The path comes from a file we do not control: keep it inside the folder, and the same on every system.
    if (!PLAIN_PATH.test(entry.path)) {
      throw new ModelFolderError(message('not_plain', { meta: this.#metaPath, key, name: entry.path }));
    }
    return this.#backend.join(this.path, entry.path);
  }

  /** The bytes of files[key], refusing a missing file, one that is not a regular file inside the folder, or one
   * whose size or sha256 differs from vae.json. Each call reads and hashes the file: a load asks once a file. */
  async read(key) {
    const path = this.where(key), { bytes, sha256: want } = this.meta.files[key];
    let data;
    try {
      data = await readInside(this.#backend, this.path, path, { bytes });
    } catch (e) {
      throw e instanceof ModelFolderError ? e : new ModelFolderError(`cannot read ${path}: ${oneLine(e)}`);
    }
    if ((await sha256(data)) !== want) throw new ModelFolderError(message('sha256', { path }));
    return data;
  }

  /** The keys of the files a precision loads, [encoder, decoder], refusing a folder without them (saying why where
   * it knows). */
  filesFor(precision) {
    const keys = PRECISIONS[precision];
    if (precision === 'int8' && !keys.every((k) => this.has(k))) {
      const int8 = this.meta.int8;
      const over = int8 && typeof int8 === 'object' && !Object.hasOwn(int8, 'method');
      throw new ModelFolderError(message(over ? 'int8_over_bound' : 'int8_missing',
        { folder: this.path, fp32: "precision 'fp32'" }));
    }
    return keys;
  }
}
