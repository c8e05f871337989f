#!/usr/bin/env node
// int8 against fp32 in onnxruntime-web's WebAssembly, run in Node on one thread (what a page without
// cross-origin isolation gets): each folder's encoder and decoder, fp32 and int8, at batch 1, 64 and 1024, timed in
// interleaved rounds so that load from elsewhere hits them all alike; the median call and int8's ratio to fp32.
// docs/export-and-int8.md gives the figures. Inputs are fresh random: pixels uniform in [0, 1], latents N(0, 1).
//
//   node tools/int8-wasm.mjs FOLDER [FOLDER ...] [--rounds 5] [--seconds 0.5]

import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-web';
import { gaussian, randomSeed, uniform } from '../src/random.js';

const BATCHES = [1, 64, 1024];

function parse(argv) {
  const opts = { folders: [], rounds: 5, seconds: 0.5 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--rounds') opts.rounds = Number(argv[++i]);
    else if (argv[i] === '--seconds') opts.seconds = Number(argv[++i]);
    else if (argv[i].startsWith('--')) throw new Error(`unknown argument ${argv[i]}`);
    else opts.folders.push(argv[i]);
  }
  if (!opts.folders.length) throw new Error('usage: int8-wasm.mjs FOLDER [FOLDER ...] [--rounds R] [--seconds S]');
  return opts;
}

async function contenders(folder) {
  const meta = JSON.parse(fs.readFileSync(path.join(folder, 'vae.json'), 'utf8'));
  const shape = meta.model.input_shape, latent = meta.model.latent_dim, pixels = shape.reduce((a, b) => a * b, 1);
  const out = [];
  for (const graph of ['encoder', 'decoder']) {
    for (const precision of ['fp32', 'int8']) {
      const file = meta.files[precision === 'int8' ? `${graph}_int8` : graph];
      if (!file) continue;
      const session = await ort.InferenceSession.create(fs.readFileSync(path.join(folder, file.path)),
        { executionProviders: ['wasm'] });
      for (const batch of BATCHES) {
        const feed = graph === 'encoder'
          ? { x: new ort.Tensor('float32', uniform(batch * pixels, randomSeed()), [batch, ...shape]) }
          : { z: new ort.Tensor('float32', gaussian(batch * latent, randomSeed()), [batch, latent]) };
        out.push({ folder, graph, precision, batch, run: () => session.run(feed), times: [] });
      }
    }
  }
  return out;
}

async function main() {
  const opts = parse(process.argv.slice(2));
  ort.env.wasm.numThreads = 1;
  const all = [];
  for (const folder of opts.folders) all.push(...(await contenders(folder)));
  for (const c of all) await c.run();  // one untimed call each
  for (let r = 0; r < opts.rounds; r++) {
    for (const c of all) {
      const end = performance.now() + opts.seconds * 1000;
      do {
        const t0 = performance.now();
        await c.run();
        c.times.push((performance.now() - t0) / c.batch);
      } while (performance.now() < end);
    }
  }
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  console.log(`onnxruntime-web ${ort.env.versions?.web ?? ''} wasm, 1 thread, Node ${process.version}; ${opts.rounds} rounds`);
  console.log('| folder | graph | batch | µs an image fp32 | int8 | int8 vs fp32 |\n|---|---|---:|---:|---:|---:|');
  for (const c of all.filter((c) => c.precision === 'fp32')) {
    const int8 = all.find((d) => d.folder === c.folder && d.graph === c.graph && d.batch === c.batch && d.precision === 'int8');
    if (!int8) continue;
    const a = median(c.times) * 1000, b = median(int8.times) * 1000;
    console.log(`| ${c.folder} | ${c.graph} | ${c.batch} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(a / b).toFixed(2)}x |`);
  }
}

main().catch((e) => {
  console.error(`int8-wasm failed: ${e.message}`);
  process.exit(1);
});
