// The npm package in an app that did not install its onnxruntime-node peer: one line naming the package to install.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const WEB = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
let app;
before(() => {
  // the package's files as npm installs them (npm pack's list), copied: a link would resolve onnxruntime-node
  // from web/node_modules
  app = mkdtempSync(path.join(os.tmpdir(), 'vae-edge-no-peer-'));
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json'], { cwd: WEB, encoding: 'utf8' }));
  const installed = path.join(app, 'node_modules', 'vae-edge');
  for (const { path: file } of packed.files) {
    mkdirSync(path.dirname(path.join(installed, file)), { recursive: true });
    cpSync(path.join(WEB, file), path.join(installed, file));
  }
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
});
after(() => rmSync(app, { recursive: true, force: true }));

test('importing vae-edge without onnxruntime-node says in one line which package to install', () => {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e',
    "try { await import('vae-edge'); } catch (e) { console.error(e.message); process.exit(3); }"],
  { cwd: app, encoding: 'utf8' });
  assert.equal(r.status, 3, r.stderr);
  assert.equal(r.stderr, 'vae-edge in Node.js needs onnxruntime-node: npm install onnxruntime-node\n');
});
