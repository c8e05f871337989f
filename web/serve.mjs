#!/usr/bin/env node
// `make serve-web`: serve the assembled site/ on this machine, with what onnxruntime-web needs:
// the application/wasm MIME type (for streaming compilation) and the cross-origin isolation headers
// (COOP + COEP) without which a page gets no SharedArrayBuffer and so no WebAssembly threads.
// Nothing here reaches the internet; the site is self-contained (web/build.mjs).

import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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

/** Serve `root`; isolate: send COOP/COEP (threads on). Resolves to the listening http.Server. */
export function serve(root, { port = 8000, host = '127.0.0.1', isolate = true } = {}) {
  root = path.resolve(root);
  const server = http.createServer(async (req, res) => {
    const headers = { 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff', ...(isolate && ISOLATION) };
    const reply = (status, text) => {
      res.writeHead(status, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(req.method === 'HEAD' ? undefined : `${text}\n`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'method not allowed');
    let file;
    try {
      const rel = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
      file = path.join(root, path.normalize(rel));
    } catch {
      return reply(400, 'bad request');
    }
    if (file !== root && !file.startsWith(root + path.sep)) return reply(403, 'forbidden');
    try {
      let info = await stat(file);
      if (info.isDirectory()) {
        file = path.join(file, 'index.html');
        info = await stat(file);
      }
      if (!info.isFile()) return reply(404, 'not found');
      res.writeHead(200, {
        ...headers,
        'Content-Type': TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
        'Content-Length': info.size,
      });
      if (req.method === 'HEAD') return res.end();
      createReadStream(file).on('error', () => res.destroy()).pipe(res);
    } catch {
      reply(404, 'not found');
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
