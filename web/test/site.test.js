// make web (build.mjs) and make serve-web (serve.mjs): what the site holds and the headers it is served with.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build } from '../build.mjs';
import { serve } from '../serve.mjs';

const MODEL = path.join(process.env.VAE_EDGE_REFERENCE ?? '', 'mlp', 'model');
let tmp;
before(() => { tmp = mkdtempSync(path.join(os.tmpdir(), 'vae-edge-site-')); });
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('build.mjs', () => {
  test('assembles the page, the library, onnxruntime-web and the model with its sha256s intact', async () => {
    const out = path.join(tmp, 'site');
    const info = await build({ model: MODEL, out });
    for (const f of ['index.html', 'app.js', 'style.css', 'vae-edge/browser.js', 'vae-edge/vae.js', 'ort/ort.wasm.min.mjs',
      'ort/ort-wasm-simd-threaded.mjs', 'ort/ort-wasm-simd-threaded.wasm', 'model/vae.json', 'build.json']) {
      assert.ok(existsSync(path.join(out, f)), `${f} is missing`);
    }
    const meta = JSON.parse(readFileSync(path.join(out, 'model', 'vae.json'), 'utf8'));
    for (const entry of Object.values(meta.files)) {
      const bytes = readFileSync(path.join(out, 'model', entry.path));
      assert.equal(createHash('sha256').update(bytes).digest('hex'), entry.sha256, entry.path);
    }
    assert.ok(info.bytes.total > info.bytes.ort + info.bytes.model);
    assert.deepEqual(JSON.parse(readFileSync(path.join(out, 'build.json'), 'utf8')), info);
  });

  test('the page loads nothing from outside the site', () => {
    const html = readFileSync(path.join(tmp, 'site', 'index.html'), 'utf8');
    const js = ['app.js', 'vae-edge/browser.js'].map((f) => readFileSync(path.join(tmp, 'site', f), 'utf8')).join('\n');
    assert.doesNotMatch(html + js, /(src|href)=["']https?:|from ['"]https?:|import\(['"]https?:/);
  });

  test('rebuilding replaces the site it built before', async () => {
    const out = path.join(tmp, 'site');
    writeFileSync(path.join(out, 'stale.txt'), 'from an earlier build');
    await build({ model: MODEL, out });
    assert.ok(!existsSync(path.join(out, 'stale.txt')));
  });

  test('refuses to replace a folder it did not build', async () => {
    const out = path.join(tmp, 'mine');
    mkdirSync(out);
    writeFileSync(path.join(out, 'precious.txt'), 'keep me');
    await assert.rejects(build({ model: MODEL, out }), /not a site built here/);
    assert.equal(readFileSync(path.join(out, 'precious.txt'), 'utf8'), 'keep me');
  });

  test('refuses a model folder whose files do not match vae.json, and writes nothing', async () => {
    const model = path.join(tmp, 'bad-model');
    mkdirSync(model);
    for (const f of ['vae.json', 'encoder.onnx', 'decoder.onnx']) writeFileSync(path.join(model, f), readFileSync(path.join(MODEL, f)));
    const meta = JSON.parse(readFileSync(path.join(model, 'vae.json'), 'utf8'));
    meta.files = { encoder: meta.files.encoder, decoder: { ...meta.files.decoder, sha256: '0'.repeat(64) } };
    writeFileSync(path.join(model, 'vae.json'), JSON.stringify(meta));
    const out = path.join(tmp, 'never');
    await assert.rejects(build({ model, out }), /decoder\.onnx does not match the sha256/);
    assert.ok(!existsSync(out));
  });
  test('reads the model folder by the same rules as the library: a decoder that is a symlink out of it is refused', async () => {
    const model = path.join(tmp, 'linked-model');
    mkdirSync(model);
    for (const f of ['vae.json', 'encoder.onnx']) writeFileSync(path.join(model, f), readFileSync(path.join(MODEL, f)));
    symlinkSync(path.join(MODEL, 'decoder.onnx'), path.join(model, 'decoder.onnx')); // the right bytes, outside
    const out = path.join(tmp, 'never-linked');
    await assert.rejects(build({ model, out }), /decoder\.onnx resolves outside the model folder/);
    assert.ok(!existsSync(out));
  });
});

describe('serve.mjs', () => {
  let root;
  before(() => {
    root = path.join(tmp, 'served');
    mkdirSync(path.join(root, 'sub'), { recursive: true });
    writeFileSync(path.join(root, 'index.html'), '<p>hi</p>');
    writeFileSync(path.join(root, 'm.wasm'), Buffer.from([0, 97, 115, 109, 1, 0, 0, 0]));
    writeFileSync(path.join(root, 'sub', 'a.mjs'), 'export {};');
    writeFileSync(path.join(tmp, 'secret.txt'), 'outside the root');
    writeFileSync(path.join(root, '.env'), 'TOKEN=outside the root');
    mkdirSync(path.join(root, '.git'));
    writeFileSync(path.join(root, '.git', 'config'), 'outside the root');
    symlinkSync(path.join(tmp, 'secret.txt'), path.join(root, 'link.txt'));
    symlinkSync(tmp, path.join(root, 'up'));
    symlinkSync('index.html', path.join(root, 'home.html'));
    execFileSync('mkfifo', [path.join(root, 'pipe.js')]);
  });
  const get = async (isolate, url, init) => {
    const server = await serve(root, { port: 0, isolate });
    try {
      const res = await fetch(`http://127.0.0.1:${server.address().port}${url}`, init);
      return { status: res.status, headers: res.headers, body: await res.text() };
    } finally {
      server.close();
    }
  };

  test('sends .wasm as application/wasm, with the cross-origin isolation headers', async () => {
    const res = await get(true, '/m.wasm');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/wasm');
    assert.equal(res.headers.get('cross-origin-opener-policy'), 'same-origin');
    assert.equal(res.headers.get('cross-origin-embedder-policy'), 'require-corp');
  });
  test('serves index.html for a folder and JavaScript modules as text/javascript', async () => {
    assert.equal((await get(true, '/')).body, '<p>hi</p>');
    assert.match((await get(true, '/sub/a.mjs')).headers.get('content-type'), /^text\/javascript/);
  });
  test('without isolation, sends no COOP/COEP headers', async () => {
    const res = await get(false, '/m.wasm');
    assert.equal(res.headers.get('cross-origin-opener-policy'), null);
    assert.equal(res.headers.get('cross-origin-embedder-policy'), null);
  });
  test('never serves a file outside its folder', async () => {
    for (const url of ['/../secret.txt', '/%2e%2e/secret.txt', '/sub/..%2f..%2fsecret.txt']) {
      const res = await get(true, url);
      assert.ok([403, 404].includes(res.status), `${url}: ${res.status}`);
      assert.doesNotMatch(res.body, /outside the root/);
    }
  });
  test('never follows a symlink out of its folder, to a file or a folder', async () => {
    for (const url of ['/link.txt', '/up/secret.txt']) {
      const res = await get(true, url);
      assert.equal(res.status, 404, url);
      assert.doesNotMatch(res.body, /outside the root/);
    }
  });
  test('follows a symlink that stays inside its folder', async () => {
    assert.equal((await get(true, '/home.html')).body, '<p>hi</p>');
  });
  test('serves no dotfile and nothing in a dot-folder', async () => {
    for (const url of ['/.env', '/.git/config', '/%2eenv', '/sub/../.env']) {
      const res = await get(true, url);
      assert.equal(res.status, 404, url);
      assert.doesNotMatch(res.body, /outside the root/);
    }
  });
  test('answers a FIFO with 404 instead of waiting for a writer', { timeout: 20_000 }, async () => {
    assert.equal((await get(true, '/pipe.js')).status, 404);
  });
  test('bound to loopback, answers only Host headers naming loopback (DNS rebinding)', async () => {
    const server = await serve(root, { port: 0 });
    const { port } = server.address();
    const status = (host) => new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/', headers: { host } }, (res) => {
        res.resume();
        resolve(res.statusCode);
      }).on('error', reject);
    });
    try {
      for (const host of ['localhost', `localhost:${port}`, '127.0.0.1', `127.0.0.1:${port}`, '127.1.2.3', '[::1]',
        `[::1]:${port}`, 'LocalHost']) {
        assert.equal(await status(host), 200, host);
      }
      for (const host of ['evil.example', `evil.example:${port}`, 'localhost.evil.example', '127.0.0.1.nip.io', '10.0.0.1',
        '[::2]']) {
        assert.equal(await status(host), 421, host);
      }
      const raw = await new Promise((resolve, reject) => { // HTTP/1.0 allows a request without a Host header
        const socket = net.connect(port, '127.0.0.1', () => socket.end('GET / HTTP/1.0\r\n\r\n'));
        let text = '';
        socket.on('data', (d) => { text += d; }).on('end', () => resolve(text)).on('error', reject);
      });
      assert.match(raw, /^HTTP\/1\.[01] 421 /);
    } finally {
      server.close();
    }
  });
  test('bound to all interfaces, answers any Host', async () => {
    const server = await serve(root, { port: 0, host: '0.0.0.0' });
    try {
      const res = await new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: server.address().port, path: '/', headers: { host: 'my-laptop.lan' } }, resolve).on('error', reject);
      });
      res.resume();
      assert.equal(res.statusCode, 200);
    } finally {
      server.close();
    }
  });
  test('404 for a missing file, 405 for a POST', async () => {
    assert.equal((await get(true, '/nope.js')).status, 404);
    assert.equal((await get(true, '/', { method: 'POST' })).status, 405);
  });
});
