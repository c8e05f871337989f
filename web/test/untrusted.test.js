// A model folder from a stranger (issue 31, docs/security.md): loading it never reads a file outside it, never
// hangs, never crashes, and never returns output of the wrong shape or type. Each test crafts one hostile folder
// from tests/conformance/folders/valid (or format-2), with vae.json's sha256 and bytes rewritten to match, so
// that only the rule under test can refuse it.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { ModelFolderError, RuntimeInputError, VAE } from 'vae-edge';
import { attribute, decoder, externalTensor, message, model, node, tensor, valueInfo } from './onnx-build.js';

const FOLDERS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'tests', 'conformance', 'folders');
const SHAPE = [1, 2, 3], LATENT = 2; // the conformance folders' model
const TIMEOUT = { timeout: 20_000 }; // a reader that hangs fails its test instead of the run

let tmp, count = 0;
before(() => { tmp = mkdtempSync(path.join(os.tmpdir(), 'vae-edge-untrusted-')); });
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of a conformance folder (valid, format-2) in its own temporary folder: <tmp>/<n>/model. */
function copy(from = 'valid') {
  const folder = path.join(tmp, String(count++), 'model');
  cpSync(path.join(FOLDERS, from), folder, { recursive: true });
  return folder;
}
const editMeta = (folder, edit) => {
  const meta = JSON.parse(readFileSync(path.join(folder, 'vae.json'), 'utf8'));
  edit(meta);
  writeFileSync(path.join(folder, 'vae.json'), JSON.stringify(meta));
};
/** files[key] rewritten to hold `bytes`, with a matching sha256 and size. */
function put(folder, key, bytes) {
  editMeta(folder, (meta) => {
    writeFileSync(path.join(folder, meta.files[key].path), bytes);
    Object.assign(meta.files[key], { sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length });
  });
  return folder;
}
const refuses = (promise, fragment, kind = ModelFolderError) => assert.rejects(promise, (e) => {
  assert.ok(e instanceof kind, `expected a ${kind.name}, got ${e?.name}: ${e?.message}`);
  assert.ok(e.message.includes(fragment), `message: ${e.message}`);
  assert.ok(!e.message.includes('\n'), 'the message is one line');
  return true;
});

describe('only regular files of the declared size, inside the folder, are read', () => {
  test('a FIFO named decoder.onnx is refused without waiting for a writer', TIMEOUT, async () => {
    const folder = copy();
    rmSync(path.join(folder, 'decoder.onnx'));
    execFileSync('mkfifo', [path.join(folder, 'decoder.onnx')]);
    await refuses(VAE.load(folder), 'decoder.onnx is not a regular file');
  });
  test('a decoder.onnx that is a symlink to /dev/zero is refused before a byte is read', TIMEOUT, async () => {
    const folder = copy();
    rmSync(path.join(folder, 'decoder.onnx'));
    symlinkSync('/dev/zero', path.join(folder, 'decoder.onnx'));
    await refuses(VAE.load(folder), 'decoder.onnx resolves outside the model folder');
  });
  test('a symlink to a file outside the folder is refused, even one with the right bytes', async () => {
    const folder = copy();
    renameSync(path.join(folder, 'decoder.onnx'), path.join(folder, '..', 'decoder.onnx'));
    symlinkSync('../decoder.onnx', path.join(folder, 'decoder.onnx'));
    await refuses(VAE.load(folder), 'decoder.onnx resolves outside the model folder');
  });
  test('a symlink to a file inside the folder is followed', async () => {
    const folder = copy();
    mkdirSync(path.join(folder, 'real'));
    renameSync(path.join(folder, 'decoder.onnx'), path.join(folder, 'real', 'decoder.onnx'));
    symlinkSync('real/decoder.onnx', path.join(folder, 'decoder.onnx'));
    assert.equal((await (await VAE.load(folder)).sample(2, { seed: 1 })).length, 2 * 6);
  });
  test('a folder named decoder.onnx is refused', async () => {
    const folder = copy();
    rmSync(path.join(folder, 'decoder.onnx'));
    mkdirSync(path.join(folder, 'decoder.onnx'));
    await refuses(VAE.load(folder), 'decoder.onnx is not a regular file');
  });
  test('a file longer than vae.json says is refused before it is read', async () => {
    const folder = copy();
    writeFileSync(path.join(folder, 'decoder.onnx'), Buffer.concat([readFileSync(path.join(folder, 'decoder.onnx')), Buffer.from([0])]));
    await refuses(VAE.load(folder), 'decoder.onnx has 281 bytes; vae.json says 280');
  });
  test('a files entry without bytes is refused: bytes is required', async () => {
    const folder = copy();
    editMeta(folder, (m) => { delete m.files.decoder.bytes; });
    await refuses(VAE.load(folder), 'vae.json lists no decoder file (path, sha256 and bytes)');
  });
  test('a files entry with bytes that is not an integer below 2^31 is refused', async () => {
    for (const bytes of [-1, 2 ** 31, 280.5, '280']) {
      const folder = copy();
      editMeta(folder, (m) => { m.files.decoder.bytes = bytes; });
      await refuses(VAE.load(folder), 'lists no decoder file');
    }
  });
  test('a vae.json that is a FIFO is refused without hanging', TIMEOUT, async () => {
    const folder = copy();
    rmSync(path.join(folder, 'vae.json'));
    execFileSync('mkfifo', [path.join(folder, 'vae.json')]);
    await refuses(VAE.load(folder), 'vae.json is not a regular file');
  });
  test('a vae.json that is a symlink to /dev/zero is refused', TIMEOUT, async () => {
    const folder = copy();
    rmSync(path.join(folder, 'vae.json'));
    symlinkSync('/dev/zero', path.join(folder, 'vae.json'));
    await refuses(VAE.load(folder), 'vae.json resolves outside the model folder');
  });
});

describe('vae.json has a size limit and a nesting limit', () => {
  test('a vae.json over 1 MiB is refused', async () => {
    const folder = copy();
    editMeta(folder, (m) => { m.padding = 'x'.repeat(2 ** 20); });
    await refuses(VAE.load(folder), 'vae.json is larger than 1 MiB, the limit for vae.json');
  });
  test('a vae.json nested 5,000 deep is refused in one line, before the JSON parser runs', async () => {
    const folder = copy();
    const text = readFileSync(path.join(folder, 'vae.json'), 'utf8');
    writeFileSync(path.join(folder, 'vae.json'), text.replace(/}\s*$/, `, "deep": ${'['.repeat(5000)}${']'.repeat(5000)}}`));
    await refuses(VAE.load(folder), 'vae.json is nested deeper than 32 levels');
  });
  test('32 levels load; brackets inside strings do not count', async () => {
    const folder = copy();
    editMeta(folder, (m) => {
      m.deep = JSON.parse(`${'['.repeat(31)}${']'.repeat(31)}`); // 31 inside the top-level object: 32
      m.text = '[[[[{{{{\\"['.repeat(20);
    });
    await VAE.load(folder);
  });
});

describe('over http(s): the response length and a capped read', () => {
  let server, base;
  const routes = new Map(); // url path -> (req, res)
  before(async () => {
    server = http.createServer((req, res) => {
      const route = routes.get(req.url);
      if (route) return route(req, res);
      const file = path.join(FOLDERS, 'valid', path.basename(req.url));
      try {
        res.end(readFileSync(file));
      } catch {
        res.writeHead(404).end();
      }
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${server.address().port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  test('a folder served as is loads', async () => {
    await VAE.load(`${base}/valid`);
  });
  test('a Content-Length other than bytes is refused', async () => {
    routes.set('/long/vae.json', (req, res) => res.end(readFileSync(path.join(FOLDERS, 'valid', 'vae.json'))));
    routes.set('/long/encoder.onnx', (req, res) => res.end(readFileSync(path.join(FOLDERS, 'valid', 'encoder.onnx'))));
    routes.set('/long/decoder.onnx', (req, res) => res.end(Buffer.alloc(1000)));
    await refuses(VAE.load(`${base}/long`), 'decoder.onnx has 1000 bytes; vae.json says 280');
  });
  test('an endless response without a length is refused after bytes + 1, not read to the end', TIMEOUT, async () => {
    routes.set('/endless/vae.json', (req, res) => res.end(readFileSync(path.join(FOLDERS, 'valid', 'vae.json'))));
    routes.set('/endless/encoder.onnx', (req, res) => res.end(readFileSync(path.join(FOLDERS, 'valid', 'encoder.onnx'))));
    routes.set('/endless/decoder.onnx', (req, res) => {
      const chunk = Buffer.alloc(4096);
      const more = () => { while (!res.destroyed && res.write(chunk)); };
      res.on('drain', more);
      more();
    });
    await refuses(VAE.load(`${base}/endless`), 'decoder.onnx has more than 280 bytes; vae.json says 280');
  });
  test('an endless vae.json is refused at 1 MiB', TIMEOUT, async () => {
    routes.set('/endless-json/vae.json', (req, res) => {
      const chunk = Buffer.alloc(65536, 0x20);
      const more = () => { while (!res.destroyed && res.write(chunk)); };
      res.on('drain', more);
      more();
    });
    await refuses(VAE.load(`${base}/endless-json`), 'vae.json is larger than 1 MiB');
  });
});

describe('an ONNX file holds only what the closed list allows, checked before onnxruntime sees it', () => {
  const graphWith = (over) => model({ nodes: [node('MatMul', ['z', 'W'], ['h']), node('Reshape', ['h', 'S'], ['x'])],
    initializers: [tensor('W', [LATENT, 6], new Array(12).fill(0.5)), tensor('S', [4], [-1, ...SHAPE], { type: 7 })],
    inputs: [valueInfo('z', ['batch', LATENT])], outputs: [valueInfo('x', ['batch', ...SHAPE])], ...over });

  test('the crafted decoder these tests alter loads and decodes', async () => {
    const vae = await VAE.load(put(copy(), 'decoder', graphWith({})));
    assert.deepEqual(await vae.decode([1, 1]), new Float32Array(6).fill(1));
  });
  test("external data is refused, and ./secret.bin in the working directory is never read", async () => {
    const cwd = path.join(tmp, 'cwd'), before = process.cwd();
    mkdirSync(cwd);
    writeFileSync(path.join(cwd, 'secret.bin'), new Uint8Array(new Float32Array(12).fill(42).buffer));
    const folder = put(copy(), 'decoder', decoder(LATENT, SHAPE, { weights: externalTensor('W', [LATENT, 6], 'secret.bin') }));
    process.chdir(cwd);
    try {
      await refuses(VAE.load(folder), 'decoder.onnx stores a tensor outside the file (external data), which a model folder may not');
    } finally {
      process.chdir(before);
    }
  });
  test('an external_data entry alone is refused too', async () => {
    const w = tensor('W', [LATENT, 6], new Array(12).fill(0.5), { extra: [[13, message([1, 'location'], [2, 'w.bin'])]] });
    await refuses(VAE.load(put(copy(), 'decoder', decoder(LATENT, SHAPE, { weights: w }))), 'stores a tensor outside the file');
  });
  test('a Constant whose tensor attribute is external is refused', async () => {
    const constant = node('Constant', [], ['W'], { attributes: [attribute('value', 4, [5, externalTensor('v', [LATENT, 6], 'w.bin')])] });
    const file = graphWith({ nodes: [constant, node('MatMul', ['z', 'W'], ['h']), node('Reshape', ['h', 'S'], ['x'])],
      initializers: [tensor('S', [4], [-1, ...SHAPE], { type: 7 })] });
    await refuses(VAE.load(put(copy(), 'decoder', file)), 'stores a tensor outside the file');
  });
  test('an attribute holding a list of tensors, one external, is refused', async () => {
    const attr = attribute('values', 9, [10, tensor('a', [1], [1])], [10, externalTensor('b', [1], 'b.bin')]);
    const file = graphWith({ nodes: [node('MatMul', ['z', 'W'], ['h'], { attributes: [attr] }), node('Reshape', ['h', 'S'], ['x'])] });
    await refuses(VAE.load(put(copy(), 'decoder', file)), 'stores a tensor outside the file');
  });
  test('a sparse initializer is refused', async () => {
    const sparse = message([1, tensor('values', [1], [1])], [2, tensor('indices', [1], [0], { type: 7 })], [3, 2], [3, 6]);
    await refuses(VAE.load(put(copy(), 'decoder', graphWith({ graphExtra: [[15, sparse]] }))),
      'decoder.onnx holds a sparse tensor, which a model folder may not');
  });
  test('a node of another operator domain is refused', async () => {
    const file = graphWith({ nodes: [node('MatMul', ['z', 'W'], ['h'], { domain: 'com.microsoft' }), node('Reshape', ['h', 'S'], ['x'])] });
    await refuses(VAE.load(put(copy(), 'decoder', file)), "decoder.onnx uses operator domain 'com.microsoft', which a model folder may not");
  });
  test('an opset_import of another domain is refused', async () => {
    await refuses(VAE.load(put(copy(), 'decoder', graphWith({ opsets: [['ai.onnx.ml', 3]] }))), "uses operator domain 'ai.onnx.ml'");
  });
  test('model-local functions are refused', async () => {
    const fn = message([1, 'F'], [4, 'x'], [5, 'y'], [7, node('Identity', ['x'], ['y'])], [10, 'local']);
    await refuses(VAE.load(put(copy(), 'decoder', graphWith({ extra: [[25, fn]] }))),
      'decoder.onnx defines local functions, which a model folder may not');
  });
  test('a subgraph (an If) is refused', async () => {
    const branch = message([1, node('Identity', ['h'], ['x'])], [2, 'b'], [12, valueInfo('x', ['batch', ...SHAPE])]);
    const cond = node('If', ['c'], ['x'], { attributes: [attribute('then_branch', 5, [6, branch]), attribute('else_branch', 5, [6, branch])] });
    await refuses(VAE.load(put(copy(), 'decoder', graphWith({ nodes: [cond] }))), 'decoder.onnx holds a subgraph, which a model folder may not');
  });
  test('a protobuf cut short is corrupt, in one line', async () => {
    const bytes = graphWith({});
    await refuses(VAE.load(put(copy(), 'decoder', bytes.subarray(0, bytes.length - 40))), 'decoder.onnx is not a loadable ONNX model (corrupt?)');
  });
  test('the prior and the encoder are held to it too', async () => {
    const bad = graphWith({ opsets: [['com.example', 1]] });
    await refuses(VAE.load(put(copy(), 'encoder', bad)), 'encoder.onnx uses operator domain');
    await refuses(VAE.load(put(copy('format-2'), 'prior', bad)), 'prior.onnx uses operator domain');
  });
});

describe("every graph's contract at load, every run's outputs checked", () => {
  /** A decoder that ignores z and returns `values` reshaped to `to`, declaring x [batch, 1, 2, 3]. */
  const constantDecoder = (to, type = 1) => model({
    nodes: [node('Reshape', ['C', 'S'], ['y']), ...(type === 1 ? [node('Identity', ['y'], ['x'])]
      : [node('Cast', ['y'], ['x'], { attributes: [attribute('to', 2, [3, type])] })])],
    initializers: [tensor('C', [6], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), tensor('S', [to.length], to, { type: 7 })],
    inputs: [valueInfo('z', ['batch', LATENT])], outputs: [valueInfo('x', ['batch', ...SHAPE], type)] });

  test('a decoder that returns one image whatever the batch is refused at the first run', async () => {
    const vae = await VAE.load(put(copy(), 'decoder', constantDecoder([1, ...SHAPE])));
    await refuses(vae.sample(4, { seed: 0 }), 'decoder.onnx returned float32 [1, 1, 2, 3]; expected float32 [4, 1, 2, 3]');
  });
  test('a decoder that returns images of another shape than it declares is refused', async () => {
    const vae = await VAE.load(put(copy(), 'decoder', decoder(LATENT, SHAPE, { reshapeTo: [1, 3, 2] })));
    await refuses(vae.decode([0.5, 0.5, 1, 1]), 'decoder.onnx returned float32 [2, 1, 3, 2]; expected float32 [2, 1, 2, 3]');
  });
  test('a decoder with an int64 output is refused, not a BigInt TypeError', async () => {
    const vae = await VAE.load(put(copy(), 'decoder', decoder(LATENT, SHAPE, { outType: 7 })));
    await refuses(vae.sample(2, { seed: 0 }), 'decoder.onnx returned int64 [2, 1, 2, 3]; expected float32 [2, 1, 2, 3]');
  });
  test('an encoder whose mu has the wrong batch is refused', async () => {
    const file = model({ nodes: [node('Reshape', ['C', 'S'], ['mu']), node('Identity', ['mu'], ['logvar'])],
      initializers: [tensor('C', [2], [0, 0]), tensor('S', [2], [1, LATENT], { type: 7 })],
      inputs: [valueInfo('x', ['batch', ...SHAPE])], outputs: [valueInfo('mu', ['batch', LATENT]), valueInfo('logvar', ['batch', LATENT])] });
    const vae = await VAE.load(put(copy(), 'encoder', file));
    await refuses(vae.encode(new Float32Array(18).fill(0.5)), 'encoder.onnx returned float32 [1, 2]; expected float32 [3, 2]');
  });
  test('a prior.onnx that is, byte for byte, the encoder is refused at load', async () => {
    const folder = copy('format-2');
    await refuses(VAE.load(put(folder, 'prior', readFileSync(path.join(folder, 'encoder.onnx')))),
      'prior.onnx is not the prior vae.json describes: it takes x and gives mu, logvar; expected eps, u -> z');
  });
  test('a prior.onnx whose eps is not [batch, latent_dim] is refused at load', async () => {
    const file = model({ nodes: [node('Identity', ['eps'], ['z'])], inputs: [valueInfo('eps', ['batch', 3]), valueInfo('u', ['batch'])],
      outputs: [valueInfo('z', ['batch', 3])] });
    await refuses(VAE.load(put(copy('format-2'), 'prior', file)), "prior.onnx is not the prior vae.json describes: its eps is float32 [batch, 3]; expected float32 [batch, 2]");
  });
  test('a prior.onnx that returns z of the wrong batch is refused when it runs', async () => {
    const file = model({ nodes: [node('Reshape', ['eps', 'S'], ['z'])], initializers: [tensor('S', [2], [1, -1], { type: 7 })],
      inputs: [valueInfo('eps', ['batch', LATENT]), valueInfo('u', ['batch'])], outputs: [valueInfo('z', ['batch', LATENT])] });
    const vae = await VAE.load(put(copy('format-2'), 'prior', file));
    await refuses(vae.sample(3, { seed: 0 }), 'prior.onnx returned float32 [1, 6]; expected float32 [3, 2]');
  });
});

describe('counts have a limit, and a count past it is an input error', () => {
  let vae;
  before(async () => { vae = await VAE.load(path.join(FOLDERS, 'valid')); });
  test('sample(1e9) is a RuntimeInputError naming the limit, not a RangeError', () =>
    refuses(vae.sample(1e9), 'n must be at most 1048576 per call, got 1000000000', RuntimeInputError));
  test('sample(2 ** 62) too', () => refuses(vae.sample(2 ** 62), 'n must be at most 1048576 per call', RuntimeInputError));
  test('latents and interpolate steps have the same limit', async () => {
    await refuses(vae.latents(2 ** 20 + 1), 'n must be at most 1048576 per call, got 1048577', RuntimeInputError);
    await refuses(vae.interpolate(new Float32Array(6), new Float32Array(6), 2 ** 21), 'steps must be at most 1048576', RuntimeInputError);
  });
  test('the limit itself is allowed', async () => {
    assert.equal((await vae.latents(2 ** 20, { seed: 0 })).length, 2 ** 20 * LATENT);
  });
});
