// The shared conformance cases (tests/conformance/cases.json, README.md there): the library on onnxruntime-node
// gives each case the outcome the Python runtime gives (tests/test_conformance.py) and the C program will.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { ModelFolderError, RuntimeInputError, VAE } from 'vae-edge';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'tests', 'conformance');
const { cases } = JSON.parse(readFileSync(path.join(ROOT, 'cases.json'), 'utf8'));
const ERRORS = { ModelFolderError, RuntimeInputError };

/** What the library does with a case: load the folder, then sample if the case says so. */
async function run(c) {
  const vae = await VAE.load(path.join(ROOT, c.folder), { precision: c.precision ?? 'fp32',
    decoderOnly: c.decoder_only ?? false });
  if (c.sample) {
    const { n, ...options } = c.sample;
    await vae.sample(n, options);
  }
}

test('there are cases', () => assert.ok(cases.length >= 50, `${cases.length} cases`));

for (const c of cases) {
  test(`${c.name}: ${c.rule}`, async () => {
    if (c.outcome === 'accepted') return run(c);
    await assert.rejects(run(c), (e) => {
      assert.ok(e instanceof ERRORS[c.error], `expected a ${c.error}, got ${e?.name}: ${e?.message}`);
      assert.ok(e.message.includes(c.message) && !e.message.includes('\n'), `message: ${e.message}`);
      return true;
    });
  });
}
