// make release (release/check.py): the installed npm package decodes latents as an app would import it.
//   node decode.mjs MODEL_FOLDER Z_FILE OUT_DIR  ->  OUT_DIR/node-fp32.f32, OUT_DIR/node-int8.f32 (raw float32)
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { VAE } from 'vae-edge';

const [folder, zFile, out] = process.argv.slice(2);
const bytes = readFileSync(zFile);
const z = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
for (const precision of ['fp32', 'int8']) {
  const vae = await VAE.load(folder, { precision });
  writeFileSync(path.join(out, `node-${precision}.f32`), await vae.decode(z));
}
