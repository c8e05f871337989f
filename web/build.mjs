#!/usr/bin/env node
// `make web`: assemble a self-contained static site: the demo page, the library, the onnxruntime-web files
// it runs on (WebAssembly only) and a model folder. The site fetches nothing from anywhere else.
//
//   site/index.html app.js style.css     the page (web/page/)
//   site/vae-edge/*.js                   the library (web/src/, the browser entry and what it imports)
//   site/ort/                            onnxruntime-web's wasm build: ort.wasm.min.mjs + its .mjs/.wasm
//   site/model/                          vae.json and the files it lists, sha256-checked here and by the page
//   site/build.json                      what went in, with sizes
//
// Built in a temporary folder beside the target, then swapped into place: never half-written.

import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelFolderError } from './src/errors.js';
import { PRECISIONS, readFolder } from './src/folder.js';
import { openFile } from './src/node-files.js';
import { checkClosedList } from './src/onnx.js';

const WEB = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.dirname(WEB);
const ORT_DIST = path.join(WEB, 'node_modules', 'onnxruntime-web', 'dist');
const ORT_FILES = ['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'];
// The library: the browser entry and every module it imports (all of src/ but the Node entry and its files).
const LIBRARY = async () => (await readdir(path.join(WEB, 'src'))).filter((f) => f.endsWith('.js') && !f.startsWith('node'));
const PAGE = ['index.html', 'app.js', 'style.css'];
// The bundled model of the Python package where it ships one, else what `make demo` writes.
const DEFAULT_MODELS = [path.join(REPO, 'runtime', 'models', 'fashion-mnist'), path.join(REPO, 'vae-onnx')];

class BuildError extends Error {}

async function exists(p) {
  return stat(p).then(() => true, () => false);
}

async function defaultModel() {
  for (const folder of DEFAULT_MODELS) if (await exists(path.join(folder, 'vae.json'))) return folder;
  throw new BuildError('no model to put in the site: run `make demo` (it writes vae-onnx/) or pass MODEL=path/to/export');
}

/** vae.json and each file it lists, read and checked once by the library's own reader (src/folder.js, the rules of
 * docs/format.md) and written as read; unknown keys are carried along untouched. */
async function copyModel(model, dst) {
  const folder = await readFolder({ join: path.join, open: openFile }, model);
  for (const key of PRECISIONS.fp32) folder.where(key); // the page loads both
  const files = [];
  for (const key of Object.keys(folder.meta.files)) {
    const bytes = await folder.read(key);
    if (folder.meta.files[key].path.endsWith('.onnx')) checkClosedList(bytes, folder.where(key)); // as the page will
    files.push([folder.meta.files[key].path, bytes]);
  }
  await mkdir(dst);
  await writeFile(path.join(dst, 'vae.json'), folder.metaBytes);
  for (const [name, bytes] of files) {
    await mkdir(path.dirname(path.join(dst, name)), { recursive: true });
    await writeFile(path.join(dst, name), bytes);
  }
  return folder;
}

async function sizeOf(folder) {
  let total = 0;
  for (const entry of await readdir(folder, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(path.join(entry.parentPath ?? entry.path, entry.name))).size;
  }
  return total;
}

export async function build({ model, out = path.join(REPO, 'site') } = {}) {
  model = model ? path.resolve(model) : await defaultModel();
  out = path.resolve(out);
  for (const f of ORT_FILES) {
    if (!(await exists(path.join(ORT_DIST, f)))) throw new BuildError(`${path.join(ORT_DIST, f)} is missing; run \`npm ci\` in web/ (make web does)`);
  }
  if (await exists(out) && !(await exists(path.join(out, 'build.json'))) && (await readdir(out)).length > 0) {
    throw new BuildError(`${out} exists and is not a site built here (no build.json); refusing to replace it`);
  }
  await mkdir(path.dirname(out), { recursive: true });
  const tmp = await mkdtemp(path.join(path.dirname(out), `.${path.basename(out)}.tmp-`));
  try {
    await chmod(tmp, 0o755); // mkdtemp makes it private; a site is an ordinary folder
    for (const f of PAGE) await cp(path.join(WEB, 'page', f), path.join(tmp, f));
    for (const f of await LIBRARY()) await cp(path.join(WEB, 'src', f), path.join(tmp, 'vae-edge', f));
    for (const f of ORT_FILES) await cp(path.join(ORT_DIST, f), path.join(tmp, 'ort', f));
    const folder = await copyModel(model, path.join(tmp, 'model'));
    const ortVersion = JSON.parse(await readFile(path.join(ORT_DIST, '..', 'package.json'), 'utf8')).version;
    const parts = Object.fromEntries(await Promise.all(['ort', 'model', 'vae-edge'].map(async (d) => [d, await sizeOf(path.join(tmp, d))])));
    const info = { model: path.relative(REPO, model) || '.', arch: folder.meta.model.arch, latent_dim: folder.latentDim,
      onnxruntime_web: ortVersion, bytes: { ...parts, total: 0 } };
    await writeFile(path.join(tmp, 'build.json'), `${JSON.stringify(info, null, 2)}\n`);
    info.bytes.total = await sizeOf(tmp);
    await writeFile(path.join(tmp, 'build.json'), `${JSON.stringify(info, null, 2)}\n`);
    // swap: the old site aside, the new one in, the old one deleted
    const old = `${tmp}.old`;
    if (await exists(out)) await rename(out, old);
    try {
      await rename(tmp, out);
    } catch (e) {
      if (await exists(old)) await rename(old, out); // put the earlier site back
      throw e;
    }
    await rm(old, { recursive: true, force: true });
    return info;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

const HELP = `usage: node build.mjs [--model DIR] [--out site]

Assemble the demo page, the library, onnxruntime-web's wasm files and a model folder into one static site.
--model defaults to runtime/models/fashion-mnist (the bundled model) if it exists, else vae-onnx/ (make demo).`;

async function main(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') return console.log(HELP);
    if ((arg === '--model' || arg === '--out') && i + 1 < argv.length) opts[arg.slice(2)] = argv[++i];
    else throw new BuildError(`unknown argument ${arg}; see --help`);
  }
  const info = await build(opts);
  const mb = (b) => `${(b / 1e6).toFixed(2)} MB`;
  console.log(`site: ${path.relative(process.cwd(), path.resolve(opts.out ?? path.join(REPO, 'site'))) || '.'}/ ` +
    `(${mb(info.bytes.total)}: onnxruntime-web ${info.onnxruntime_web} ${mb(info.bytes.ort)}, model ${info.model} ` +
    `${mb(info.bytes.model)}, library ${mb(info.bytes['vae-edge'])}); serve it with \`make serve-web\``);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`error: ${e instanceof BuildError || e instanceof ModelFolderError ? e.message : e.stack}`);
    process.exit(2);
  });
}
