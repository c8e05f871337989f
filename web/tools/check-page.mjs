#!/usr/bin/env node
// The demo page in headless Chromium, as tests/test_web.py runs it: the served site decodes fixed z through
// window.vaeEdge as the Python runtime did (within 1e-5, int8 within its rule in tools/tolerance.js; encode and one
// seed's samples too, through the library in the page), a dragged slider, a stroke on the drawing (in a colour the
// tool picks, for an RGB model) and a click on a sample redraw their pictures, a transparent PNG uploaded is read as
// the Python runtime reads it on the model's background (recipe.background), bad input, a tampered decoder and a
// bad background show one-line errors, nothing is fetched from outside the site, and a screenshot is saved.
//
//   node tools/check-page.mjs --site SITE --reference DIR [--no-isolation] [--fp32-only] [--screenshot page.png]
//
// DIR holds inputs/{z,x}.npy and inputs/sample.json, fp32/{decode,mu,sample}.npy, optionally inputs/upload.png with
// upload.npy (read_image's array of it) and background.json (the model's background, RGB), for a learned prior
// inputs/{eps,u}.npy and fp32/from_noise.npy, and optionally int8/ for the site's model (tests/test_web.py writes
// them, with int8/tolerance.json; --fp32-only leaves int8 out). Exit code 0 when all holds, else 1.

import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openSite, waitForModel } from './chromium.mjs';
import { loadNpy } from './npy.js';
import { difference, ruleIn } from './tolerance.js';

function parse(argv) {
  const opts = { isolate: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--no-isolation') opts.isolate = false;
    else if (arg === '--fp32-only') opts.fp32Only = true;
    else if (['--site', '--reference', '--screenshot'].includes(arg) && i + 1 < argv.length) opts[arg.slice(2)] = argv[++i];
    else throw new Error(`unknown argument ${arg}`);
  }
  if (!opts.site || !opts.reference) throw new Error('usage: check-page.mjs --site SITE --reference DIR [--no-isolation] [--fp32-only] [--screenshot FILE]');
  return opts;
}

function check(ok, message) {
  if (!ok) throw new Error(message);
}

/** Max abs difference of decode(z) or encode(x).mu in the page, at a precision, from the Python runtime's; it must
 * be within the precision's rule (web/tools/tolerance.js) read from the reference folder. */
async function compare(page, what, precision, input, want, reference) {
  const got = await page.evaluate(async ([what, precision, values, n]) => {
    const { vae } = window.vaeEdge;
    // the page's own model, or the same folder loaded again at the other precision
    const model = precision === vae.precision ? vae : await vae.constructor.load('model', { precision });
    const data = new Float32Array(values);
    if (what === 'sample') return Array.from(await model.sample(n, { seed: values[0], temperature: values[1] }));
    if (what === 'from_noise') return Array.from(await model.fromNoise(data.subarray(0, n * vae.latentDim), data.subarray(n * vae.latentDim), n));
    return Array.from(what === 'decode' ? await model.decode(data, n) : (await model.encode(data, n)).mu);
  }, [what, precision, Array.from(input.data), input.shape[0]]);
  const off = difference(got, want.data, ruleIn(path.join(reference, precision)), what === 'mu' ? 'mu' : 'x');
  check(off === null, `${what} (${precision}) differs from the Python runtime: ${off}`);
  return got.reduce((worst, v, i) => Math.max(worst, Math.abs(v - want.data[i])), 0);
}

/** Do `act` and wait until the canvas #id shows another picture (30 s: a single-threaded page on a loaded 2-core
 * machine once failed this check at 10 s; the same check passed on its rerun). */
async function changes(page, id, act, message) {
  const before = await page.evaluate((id) => document.getElementById(id).toDataURL(), id);
  await act();
  await page.waitForFunction(([id, old]) => document.getElementById(id).toDataURL() !== old, [id, before], { timeout: 30_000 })
    .catch(() => { throw new Error(message); });
}

async function main() {
  const opts = parse(process.argv.slice(2));
  const z = loadNpy(path.join(opts.reference, 'inputs', 'z.npy'));
  const x = loadNpy(path.join(opts.reference, 'inputs', 'x.npy'));
  const want = loadNpy(path.join(opts.reference, 'fp32', 'decode.npy'));
  const { page, context, outside, errors, close } = await openSite(opts.site, { isolate: opts.isolate });
  try {
    await waitForModel(page);
    const facts = await page.evaluate(() => {
      const { latentDim, threads, crossOriginIsolated } = window.vaeEdge;
      return { latentDim, threads, crossOriginIsolated, cores: navigator.hardwareConcurrency };
    });
    check(facts.crossOriginIsolated === opts.isolate, `crossOriginIsolated is ${facts.crossOriginIsolated}, expected ${opts.isolate}`);
    const wantThreads = opts.isolate ? Math.min(4, facts.cores) : 1;
    check(facts.threads === wantThreads, `onnxruntime-web runs ${facts.threads} threads, expected ${wantThreads}`);
    check(facts.latentDim === z.shape[1], `window.vaeEdge.latentDim is ${facts.latentDim}, the reference z has ${z.shape[1]}`);

    // 1. decode through window.vaeEdge, as another page would; encode and int8 through the library in the page
    const worst = {};
    worst.decode = await compare(page, 'decode', 'fp32', z, want, opts.reference);
    worst.mu = await compare(page, 'mu', 'fp32', x, loadNpy(path.join(opts.reference, 'fp32', 'mu.npy')), opts.reference);
    if (existsSync(path.join(opts.reference, 'inputs', 'eps.npy'))) { // a learned prior: the same noise, the same z
      const eps = loadNpy(path.join(opts.reference, 'inputs', 'eps.npy')), u = loadNpy(path.join(opts.reference, 'inputs', 'u.npy'));
      const noise = { data: Float32Array.of(...eps.data, ...u.data), shape: eps.shape };
      worst.fromNoise = await compare(page, 'from_noise', 'fp32', noise, loadNpy(path.join(opts.reference, 'fp32', 'from_noise.npy')), opts.reference);
    }
    // one seed's samples, drawn in the page: the same noise as Python's (docs/noise.md), so the same images
    const sampling = JSON.parse(readFileSync(path.join(opts.reference, 'inputs', 'sample.json'), 'utf8'));
    worst.sample = await compare(page, 'sample', 'fp32', { data: [sampling.seed, sampling.temperature], shape: [sampling.n] },
      loadNpy(path.join(opts.reference, 'fp32', 'sample.npy')), opts.reference);
    if (existsSync(path.join(opts.reference, 'int8')) && !opts.fp32Only) {
      worst.decodeInt8 = await compare(page, 'decode', 'int8', z, loadNpy(path.join(opts.reference, 'int8', 'decode.npy')), opts.reference);
      worst.muInt8 = await compare(page, 'mu', 'int8', x, loadNpy(path.join(opts.reference, 'int8', 'mu.npy')), opts.reference);
    }

    // 2. drag the first slider as a person would; the decoded picture must change
    const slider = page.locator('#z0');
    const valueBefore = Number(await slider.inputValue());
    await changes(page, 'slider-image', async () => {
      const box = await slider.boundingBox();
      const toX = valueBefore > 0 ? box.x + 3 : box.x + box.width - 3; // to the far end from where it stands
      await page.mouse.move(box.x + box.width * ((valueBefore + 3) / 6), box.y + box.height / 2);
      await page.mouse.down();
      await page.mouse.move(toX, box.y + box.height / 2, { steps: 8 });
      await page.mouse.up();
    }, 'moving the slider did not change the picture');
    const valueAfter = Number(await slider.inputValue());
    check(Math.abs(valueAfter - valueBefore) > 1, `the slider moved from ${valueBefore} to ${valueAfter} only`);

    // 3. the picture is decode(slider values), each model pixel a solid scale x scale block (nearest neighbour)
    const drawn = await page.evaluate(async () => {
      const { vae } = window.vaeEdge, [, h, w] = vae.inputShape, pad = 2;
      const image = await vae.decode(Float32Array.from(document.querySelectorAll('#sliders input'), (s) => Number(s.value)), 1);
      const canvas = document.getElementById('slider-image'), scale = canvas.width / (w + 2 * pad);
      const rgba = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let wrong = 0;
      for (let y = 0; y < h * scale; y++) {
        for (let x = 0; x < w * scale; x++) {
          const want = Math.min(255, Math.max(0, Math.floor(image[Math.floor(y / scale) * w + Math.floor(x / scale)] * 255 + 0.5)));
          wrong += rgba[4 * ((pad * scale + y) * canvas.width + pad * scale + x)] !== want;
        }
      }
      return { wrong, scale };
    });
    check(drawn.scale >= 4 && Number.isInteger(drawn.scale), `the picture is upscaled ${drawn.scale}x; expected a whole factor >= 4`);
    check(drawn.wrong === 0, `${drawn.wrong} screen pixels of the picture differ from decode(slider values)`);
    if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });

    // 4. a stroke on the drawing pad is encoded and reconstructed anew; an RGB model's pad has a colour pen and the
    //    model's background, and draws in the colour picked (a fresh one each run, neither black nor white)
    const rgb = await page.evaluate(() => window.vaeEdge.inputShape[0] === 3);
    check(await page.isVisible('#pen') === rgb, `the colour pen is ${rgb ? 'hidden' : 'shown'} for a model of ${rgb ? 3 : 1} channel(s)`);
    const colour = Array.from({ length: 3 }, () => 40 + Math.floor(Math.random() * 176)); // 40..215
    if (rgb) await page.fill('#pen-colour', `#${colour.map((v) => v.toString(16).padStart(2, '0')).join('')}`);
    const along = [0.3, 0.5, 0.7]; // points on the stroke's centre line, as fractions of it
    await changes(page, 'reconstruction', async () => {
      const d = await page.locator('#draw').boundingBox();
      await page.mouse.move(d.x + d.width * 0.1, d.y + d.height * 0.9);
      await page.mouse.down();
      await page.mouse.move(d.x + d.width * 0.9, d.y + d.height * 0.1, { steps: 6 });
      await page.mouse.up();
    }, 'drawing on the canvas did not change the reconstruction');
    if (rgb) {
      const pad = await page.evaluate((along) => {
        const draw = document.getElementById('draw'), ctx = draw.getContext('2d');
        const pixel = (x, y) => Array.from(ctx.getImageData(Math.round(x), Math.round(y), 1, 1).data.subarray(0, 3));
        return { stroke: along.map((t) => pixel(draw.width * (0.1 + 0.8 * t), draw.height * (0.9 - 0.8 * t))),
          corner: pixel(draw.width - 2, draw.height - 2) };
      }, along);
      const off = pad.stroke.filter((p) => p.join() !== colour.join());
      check(off.length === 0, `the pad under the stroke is ${off.map((p) => `rgb(${p})`).join(', ')}, not the pen's rgb(${colour})`);
      const background = JSON.parse(readFileSync(path.join(opts.reference, 'inputs', 'background.json'), 'utf8'));
      check(pad.corner.join() === background.join(), `the pad's background is rgb(${pad.corner}), the model's rgb(${background})`);
    }

    // 4b. a transparent PNG uploaded is what the encoder sees as the Python runtime reads it (runtime/images.py's
    //     read_image: composited onto the model's background), byte for byte
    const upload = path.join(opts.reference, 'inputs', 'upload.png');
    let uploaded = false;
    if (existsSync(upload)) {
      const want = loadNpy(path.join(opts.reference, 'inputs', 'upload.npy'));
      await changes(page, 'seen', () => page.setInputFiles('#upload', upload), 'uploading an image did not change what the encoder sees');
      const seen = await page.evaluate(() => { // each model pixel of the picture, from its upscaled block
        const [c, h, w] = window.vaeEdge.inputShape, pad = 2;
        const canvas = document.getElementById('seen'), scale = canvas.width / (w + 2 * pad);
        const rgba = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const x = [];
        for (let ch = 0; ch < c; ch++) {
          for (let y = 0; y < h; y++) for (let i = 0; i < w; i++) x.push(rgba[4 * ((pad + y) * scale * canvas.width + (pad + i) * scale) + ch]);
        }
        return x;
      });
      const wrong = seen.filter((v, i) => v !== want.data[i]).length;
      check(seen.length === want.data.length && wrong === 0,
        `${wrong} of ${want.data.length} values the encoder sees of the uploaded PNG differ from the Python runtime's read_image`);
      uploaded = true;
    }

    // 5. clicking a sample makes it an end of the interpolation
    await changes(page, 'strip', async () => {
      const g = await page.locator('#grid').boundingBox();
      await page.mouse.click(g.x + g.width * 0.95, g.y + g.height * 0.95); // the last sample of the grid
    }, 'clicking a sample did not change the interpolation');

    // 6. bad input and a bad model are shown as one-line errors: n = 0, then a decoder with one byte changed
    await page.fill('#n', '0');
    await page.click('#sample-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('status').classList.contains('error'));
    const nError = await page.textContent('#status');
    check(/n must be >= 1/.test(nError), `n = 0 showed "${nError}"`);
    await page.fill('#n', '4');
    await page.click('#sample-form button[type=submit]');
    await page.waitForFunction(() => !document.getElementById('status').classList.contains('error'));
    const tampered = await context.newPage();
    await tampered.route('**/model/decoder.onnx', async (route) => {
      const body = await (await route.fetch()).body();
      body[body.length >> 1] ^= 1;
      await route.fulfill({ body, headers: { 'content-type': 'application/octet-stream' } });
    });
    await tampered.goto(page.url());
    await tampered.waitForFunction(() => window.vaeEdgeError, null, { timeout: 60_000 });
    const loadError = await tampered.textContent('#status');
    check(/decoder\.onnx does not match the sha256 in vae\.json/.test(loadError), `a tampered decoder showed "${loadError}"`);
    await tampered.close();

    // 7. the background is vae.json's recipe.background: an RGB model's pad is a fresh colour named there, and a
    //    background that is not white, black or #RRGGBB is refused in one line, as Python refuses it
    const withBackground = async (background) => {
      const other = await context.newPage();
      await other.route('**/model/vae.json', async (route) => {
        const meta = await (await route.fetch()).json();
        meta.recipe = { ...meta.recipe, background };
        await route.fulfill({ body: JSON.stringify(meta), headers: { 'content-type': 'application/json' } });
      });
      await other.goto(page.url());
      await waitForModel(other).catch(() => {});
      const seen = await other.evaluate(() => ({ error: window.vaeEdgeError,
        corner: Array.from(document.getElementById('draw').getContext('2d').getImageData(1, 1, 1, 1).data.subarray(0, 3)) }));
      await other.close();
      return seen;
    };
    const named = Array.from({ length: 3 }, () => Math.floor(Math.random() * 256));
    const hex = `#${named.map((v) => v.toString(16).padStart(2, '0')).join('')}`.toUpperCase();
    const coloured = await withBackground(hex);
    check(!coloured.error, `recipe.background ${hex} was refused: ${coloured.error}`);
    if (rgb) check(coloured.corner.join() === named.join(), `recipe.background is ${hex}, the pad rgb(${coloured.corner})`);
    const bad = await withBackground('purple');
    check(/^a background is white, black or #RRGGBB \(as #808080\), got 'purple'$/.test(bad.error ?? ''),
      `recipe.background 'purple' showed "${bad.error}"`);

    check(outside.length === 0, `the page asked for ${outside.length} outside URL(s): ${outside.slice(0, 3).join(', ')}`);
    check(errors.length === 0, `the page reported errors: ${errors.slice(0, 3).join(' | ')}`);
    console.log(`page ok: crossOriginIsolated=${facts.crossOriginIsolated}, ${facts.threads} thread(s) on ${os.cpus().length} cores; ` +
      `equal to the Python runtime (max abs ${Object.entries(worst).map(([k, v]) => `${k} ${v.toExponential(1)}`).join(', ')}); ` +
      `slider z1 ${valueBefore} -> ${valueAfter} redrew decode(z) at ${drawn.scale}x, crisp; a stroke${rgb ? ` in rgb(${colour})` : ''} and a click redrew theirs; ` +
      `${uploaded ? 'a transparent PNG uploaded was read as Python reads it; ' : ''}` +
      `${rgb ? 'the pad took recipe.background; ' : ''}n = 0, a tampered decoder and a bad background were refused on the page` +
      `${opts.screenshot ? `; screenshot ${opts.screenshot}` : ''}`);
  } finally {
    await close();
  }
}

main().catch((e) => {
  console.error(`page check failed: ${e.message}`);
  process.exit(1);
});
