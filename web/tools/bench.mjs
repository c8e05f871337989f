#!/usr/bin/env node
// The JavaScript side of bench/web.py: decode timed inside Chromium pages (onnxruntime-web, one page per thread
// count, all cross-origin isolated so that performance.now() has its fine 5 µs grain) and in Node
// (onnxruntime-node). It takes one JSON request a line on stdin and answers one JSON line on stdout, so that
// bench/web.py can interleave these with the Python runtime in rounds.
//
//   node tools/bench.mjs --site SITE --model DIR --threads 1,2
//   stdin:  {"target": "browser-2", "z": [...], "n": 64, "seconds": 0.3}
//   stdout: {"ns": [per-call times]}          first line: {"ready": {...facts}}

import readline from 'node:readline';
import { VAE } from 'vae-edge';
import { openSite, waitForModel } from './chromium.mjs';

function parse(argv) {
  const opts = { threads: '1,2' };
  for (let i = 0; i < argv.length; i++) {
    if (['--site', '--model', '--threads'].includes(argv[i]) && i + 1 < argv.length) opts[argv[i].slice(2)] = argv[++i];
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!opts.site || !opts.model) throw new Error('usage: bench.mjs --site SITE --model DIR [--threads 1,2]');
  return { ...opts, threads: opts.threads.split(',').map(Number) };
}

/** Call decode(z) for about `seconds` after one untimed call; per-call times in ns. Runs in the page, or here. */
async function timeDecode(decode, z, n, seconds) {
  await decode(z, n);
  const times = [], end = performance.now() + seconds * 1000;
  do {
    const t0 = performance.now();
    await decode(z, n);
    times.push(Math.round((performance.now() - t0) * 1e6));
  } while (performance.now() < end || times.length < 3);
  return times;
}

async function main() {
  const opts = parse(process.argv.slice(2));
  const targets = {}, closers = [];
  for (const t of opts.threads) {
    const { page, close } = await openSite(opts.site, { query: `?threads=${t}` });
    closers.push(close);
    await waitForModel(page);
    await page.evaluate(`window.timeDecode = ${timeDecode.toString()}`);
    targets[`browser-${t}`] = {
      facts: await page.evaluate(() => ({ threads: window.vaeEdge.threads, isolated: window.vaeEdge.crossOriginIsolated,
        userAgent: navigator.userAgent })),
      run: (z, n, seconds) => page.evaluate(([z, n, s]) => window.timeDecode(window.vaeEdge.decode, new Float32Array(z), n, s), [z, n, seconds]),
    };
    const node = await VAE.load(opts.model, { threads: t });
    targets[`node-${t}`] = { facts: { threads: t }, run: (z, n, seconds) => timeDecode((a, b) => node.decode(a, b), Float32Array.from(z), n, seconds) };
  }
  const facts = Object.fromEntries(Object.entries(targets).map(([k, v]) => [k, v.facts]));
  console.log(JSON.stringify({ ready: { targets: facts, node: process.version } }));
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const { target, z, n, seconds } = JSON.parse(line);
    try {
      console.log(JSON.stringify({ ns: await targets[target].run(z, n, seconds) }));
    } catch (e) {
      console.log(JSON.stringify({ error: `${target}: ${e.message}` }));
    }
  }
  for (const close of closers) await close();
}

main().catch((e) => {
  console.error(`bench failed: ${e.message}`);
  process.exit(1);
});
