// The shared conformance cases (tests/conformance/cases.json, README.md there): the library on onnxruntime-node
// gives each case the outcome the Python runtime gives (tests/test_conformance.py) and the C program will.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { ModelFolderError, RuntimeInputError, VAE } from 'vae-edge';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'tests', 'conformance');
const { cases } = JSON.parse(readFileSync(path.join(ROOT, 'cases.json'), 'utf8'));
const ERRORS = { ModelFolderError, RuntimeInputError };

let tmp;
after(() => tmp && rmSync(tmp, { recursive: true, force: true }));

/** A step of a case's setup (README.md there), applied to the temporary copy `folder` of its folder. */
function apply(step, folder) {
  const [action] = Object.keys(step).filter((k) => k !== 'to');
  const file = path.join(folder, step[action]);
  const moveAndLink = (to) => {
    mkdirSync(path.dirname(to), { recursive: true });
    renameSync(file, to);
    symlinkSync(path.relative(path.dirname(file), to), file);
  };
  if (action === 'fifo') {
    rmSync(file, { recursive: true, force: true });
    execFileSync('mkfifo', [file]);
  } else if (action === 'symlink') {
    rmSync(file, { recursive: true, force: true });
    symlinkSync(step.to, file);
  } else if (action === 'move_out') moveAndLink(path.join(folder, '..', 'outside', step[action]));
  else if (action === 'move_in') moveAndLink(path.join(folder, 'real', step[action]));
  else if (action === 'mkdir') {
    rmSync(file, { recursive: true, force: true });
    mkdirSync(file);
  } else throw new Error(`unknown setup step ${JSON.stringify(step)}`);
}

/** The folder a case loads: its own, or, for a case with a setup (a FIFO, a symlink: what git cannot hold), a
 * temporary copy with the setup applied, in a folder of its own (move_out puts a file beside the copy). */
function folderOf(c) {
  if (!c.setup) return path.join(ROOT, c.folder);
  tmp ??= mkdtempSync(path.join(os.tmpdir(), 'vae-edge-conformance-'));
  const folder = path.join(tmp, c.name, path.basename(c.folder));
  cpSync(path.join(ROOT, c.folder), folder, { recursive: true });
  for (const step of c.setup) apply(step, folder);
  return folder;
}

/** What the library does with a case: load the folder, then sample if the case says so. */
async function run(c) {
  const vae = await VAE.load(folderOf(c), { precision: c.precision ?? 'fp32',
    decoderOnly: c.decoder_only ?? false });
  if (c.sample) {
    const { n, ...options } = c.sample;
    await vae.sample(n, options);
  }
}

test('there are cases', () => assert.ok(cases.length >= 50, `${cases.length} cases`));

for (const c of cases) {
  test(`${c.name}: ${c.rule}`, { timeout: 30_000 }, async () => { // a reader that hangs fails the case
    if (c.outcome === 'accepted') return run(c);
    await assert.rejects(run(c), (e) => {
      assert.ok(e instanceof ERRORS[c.error], `expected a ${c.error}, got ${e?.name}: ${e?.message}`);
      assert.ok(e.message.includes(c.message) && !e.message.includes('\n'), `message: ${e.message}`);
      return true;
    });
  });
}

// The default-model rule (docs/format.md): no folder named reads vae-onnx; the npm package bundles no model, so a
// missing vae-onnx is refused, never replaced by another model.
test('with no folder named, VAE.load reads vae-onnx, and refuses in one line where there is none', async () => {
  const here = process.cwd();
  tmp ??= mkdtempSync(path.join(os.tmpdir(), 'vae-edge-conformance-'));
  const empty = path.join(tmp, 'default-none'), withModel = path.join(tmp, 'default-valid');
  mkdirSync(empty);
  cpSync(path.join(ROOT, 'folders', 'valid'), path.join(withModel, 'vae-onnx'), { recursive: true });
  try {
    process.chdir(withModel);
    assert.equal((await VAE.load()).latentDim, 2);
    process.chdir(empty);
    await assert.rejects(VAE.load(), (e) => e instanceof ModelFolderError
      && e.message === 'no exported model at vae-onnx; run `vae-export model.pt --out vae-onnx` first');
  } finally {
    process.chdir(here);
  }
});
