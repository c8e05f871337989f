// The library's loader on tampered model folders (tests/test_fuzz.py writes them): each folder is loaded four
// ways (fp32 and int8, with and without the encoder) and, where it loads, sampled and reconstructed.
//
//   node tools/fuzz-load.mjs CASES.json   -> one JSON line a try: {folder, precision, decoderOnly, ok, name, message}
//
// Any error is reported as it is; the Python side checks that each is the library's own, in one line.

import { readFile } from 'node:fs/promises';
import { VAE } from '../src/node.js';

const folders = JSON.parse(await readFile(process.argv[2], 'utf8'));
for (const folder of folders) {
  for (const precision of ['fp32', 'int8']) {
    for (const decoderOnly of [false, true]) {
      let result = { ok: true };
      try {
        const vae = await VAE.load(folder, { precision, decoderOnly });
        await vae.sample(2, { seed: 0 });
        if (!decoderOnly) await vae.reconstruct(Float32Array.from({ length: 2 * vae.inputShape.reduce((a, b) => a * b) }, Math.random));
      } catch (e) {
        result = { ok: false, name: e?.name ?? typeof e, message: String(e?.message ?? e) };
      }
      console.log(JSON.stringify({ folder, precision, decoderOnly, ...result }));
    }
  }
}
