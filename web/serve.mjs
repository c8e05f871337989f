#!/usr/bin/env node
// `make serve-web`: serve the assembled site/ on this machine, with what onnxruntime-web needs:
// the application/wasm MIME type (for streaming compilation) and the cross-origin isolation headers
// (COOP + COEP) without which a page gets no SharedArrayBuffer and so no WebAssembly threads.
// Nothing here reaches the internet; the site is self-contained (web/build.mjs). What it serves (docs/security.md):
// regular files whose real path lies inside the root, no dotfiles, and, bound to loopback, only to requests
// whose Host names loopback (a DNS-rebinding page on another name cannot read the site).

import { open, realpath, stat } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FLAGS, under } from './src/node-files.js';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json; charset=utf-8', '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream', '.ort': 'application/octet-stream', '.png': 'image/png',
  '.svg': 'image/svg+xml', '.txt': 'text/plain; charset=utf-8', '.map': 'application/json; charset=utf-8',
};
const ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** Whether a host (a name or an address, IPv6 without brackets) is this machine's loopback. */
function isLoopback(host) {
  host = host.toLowerCase();
  if (host === 'localhost' || host === '::1') return true;
  return net.isIPv4(host) && host.startsWith('127.');
}

/** The host a Host header names ('localhost:8000' -> 'localhost', '[::1]:80' -> '::1'), or null if malformed. */
function hostOf(header) {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::\d{1,5})?$/.exec(header ?? '');
  return m ? m[1] ?? m[2] : null;
}

/** Serve `root`; isolate: send COOP/COEP (threads on). Resolves to the listening http.Server. */
export function serve(root, { port = 8000, host = '127.0.0.1', isolate = true } = {}) {
  root = path.resolve(root);
  const loopbackOnly = isLoopback(host.replace(/^\[|\]$/g, ''));
  const server = http.createServer(async (req, res) => {
    const headers = { 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff', ...(isolate && ISOLATION) };
    const reply = (status, text) => {
      res.writeHead(status, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(req.method === 'HEAD' ? undefined : `${text}\n`);
    };
    if (loopbackOnly && !isLoopback(hostOf(req.headers.host) ?? '')) return reply(421, 'misdirected request: this server answers only to localhost');
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'method not allowed');
    let parts;
    try {
      parts = new URL(req.url, 'http://localhost').pathname.split('/').map(decodeURIComponent);
    } catch {
      return reply(400, 'bad request');
    }
    // No dotfiles or dot-folders (.env, .git), and so no '..' either; a decoded '/' or '\\' would hide a part.
    if (parts.some((p) => p.startsWith('.') || p.includes('/') || p.includes('\\') || p.includes('\0'))) return reply(404, 'not found');
    let handle;
    try {
      let real = await realpath(path.join(root, ...parts));
      if (!under(real, await realpath(root))) return reply(404, 'not found');
      if ((await stat(real)).isDirectory()) real = await realpath(path.join(real, 'index.html'));
      if (!under(real, await realpath(root))) return reply(404, 'not found');
      handle = await open(real, FLAGS); // without blocking, without following a symlink swapped in since
      const info = await handle.stat();
      if (!info.isFile()) throw new Error('not a regular file');
      res.writeHead(200, {
        ...headers,
        'Content-Type': TYPES[path.extname(real).toLowerCase()] ?? 'application/octet-stream',
        'Content-Length': info.size,
      });
      if (req.method === 'HEAD' || info.size === 0) return res.end();
      const stream = handle.createReadStream({ start: 0, end: info.size - 1 }); // what Content-Length says
      handle = null; // the stream closes it
      stream.on('error', () => res.destroy()).pipe(res);
    } catch {
      reply(404, 'not found');
    } finally {
      await handle?.close();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

const HELP = `usage: node serve.mjs [--root site] [--port 8000] [--host 127.0.0.1] [--no-isolation]

Serve the site that \`make web\` assembled. Cross-origin isolation (COOP/COEP headers) is on by
default, so that onnxruntime-web can run WebAssembly threads; --no-isolation serves the page the
way a plain static host would (one thread).`;

async function main(argv) {
  const opts = { root: 'site', port: 8000, host: '127.0.0.1', isolate: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') return console.log(HELP);
    if (arg === '--no-isolation') opts.isolate = false;
    else if (['--root', '--port', '--host'].includes(arg) && i + 1 < argv.length) opts[arg.slice(2)] = argv[++i];
    else throw new Error(`unknown argument ${arg}; see --help`);
  }
  const port = Number(opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0..65535, got ${opts.port}`);
  const index = await stat(path.join(opts.root, 'index.html')).catch(() => null);
  if (!index) throw new Error(`no site at ${opts.root}/ (no index.html); run \`make web\` first`);
  const server = await serve(opts.root, { port, host: opts.host, isolate: opts.isolate }).catch((e) => {
    throw new Error(e.code === 'EADDRINUSE' ? `port ${port} is in use; pick another with --port (make serve-web PORT=...)`
      : `cannot listen on ${opts.host}:${port}: ${e.message}`);
  });
  const { port: bound } = server.address();
  console.log(`serving ${opts.root}/ at http://${opts.host === '0.0.0.0' ? 'localhost' : opts.host}:${bound}/ ` +
    `(${opts.isolate ? 'cross-origin isolated: threads on' : 'not isolated: one thread'}); Ctrl-C stops it`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`error: ${e.message}`);
    process.exit(2);
  });
}
