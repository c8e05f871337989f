// The demo page: a grid of samples, a slider per latent dimension, interpolation between two samples and
// encoding a drawn or uploaded image, all decoded in this page by the vae-edge library on onnxruntime-web.
// window.vaeEdge exposes the loaded model ({decode(z, n), latentDim, ...}) to tests and other pages.
//
// URL parameters: ?model=model (the folder), &precision=fp32|int8, &threads=N (default: all cores when the
// page is cross-origin isolated, else 1).

import { ort, VAE } from './vae-edge/browser.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const PAD = 2; // pixels around each image of a grid, before upscaling
const MARKS = { a: [255, 140, 66], b: [76, 201, 240] };

// -- pictures ------------------------------------------------------------------------------------------------

/**
 * Draw `count` images (count x C x H x W floats in [0, 1]) into `canvas` as a grid of `cols` columns, each pixel
 * a scale x scale square (nearest neighbour: crisp, never blurred). marks: {imageIndex: [r, g, b]} outlines.
 */
function drawImages(canvas, images, count, [c, h, w], { cols = count, scale = 4, marks = {} } = {}) {
  const rows = Math.ceil(count / cols);
  const nw = cols * (w + PAD) + PAD, nh = rows * (h + PAD) + PAD;
  const pixels = new ImageData(nw, nh);
  const put = (x, y, r, g, b) => pixels.data.set([r, g, b, 255], 4 * (y * nw + x));
  for (let y = 0; y < nh; y++) for (let x = 0; x < nw; x++) put(x, y, 32, 34, 40);
  const plane = h * w;
  for (let k = 0; k < count; k++) {
    const ox = PAD + (k % cols) * (w + PAD), oy = PAD + Math.floor(k / cols) * (h + PAD);
    const mark = marks[k];
    if (mark) {
      for (let x = ox - 1; x <= ox + w; x++) { put(x, oy - 1, ...mark); put(x, oy + h, ...mark); }
      for (let y = oy - 1; y <= oy + h; y++) { put(ox - 1, y, ...mark); put(ox + w, y, ...mark); }
    }
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        // quantized as the Python runtime's grids are: floor(v * 255 + 0.5), clipped
        const rgb = [0, 1, 2].map((ch) => {
          const v = images[k * c * plane + (ch < c ? ch : 0) * plane + y * w + x];
          return Math.min(255, Math.max(0, Math.floor(v * 255 + 0.5)));
        });
        put(ox + x, oy + y, ...rgb);
      }
    }
  }
  const native = new OffscreenCanvas(nw, nh);
  native.getContext('2d').putImageData(pixels, 0, 0);
  canvas.width = nw * scale;
  canvas.height = nh * scale;
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(native, 0, 0, canvas.width, canvas.height);
  return { cols, scale, w, h };
}

/** The largest whole upscaling (1..max) at which `cols` images fit `width` CSS pixels. */
function fit(width, cols, w, max = 8) {
  return Math.max(1, Math.min(max, Math.floor(width / (cols * (w + PAD) + PAD))));
}

// -- small helpers -------------------------------------------------------------------------------------------

let facts = ''; // the status line about the loaded model, shown again once an error is fixed

function say(text, error = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
}

/** Wrap an async job so that calls made while it runs collapse into one more run after it: sliders stay live. */
function latest(job) {
  let running = false, again = false;
  return async () => {
    if (running) { again = true; return; }
    running = true;
    try {
      do { again = false; await job(); } while (again);
      if ($('status').classList.contains('error')) say(facts);
    } catch (e) {
      say(e.message, true);
    } finally {
      running = false;
    }
  };
}

const int = (id) => Number($(id).value);

// -- the page ------------------------------------------------------------------------------------------------

async function main() {
  const isolated = globalThis.crossOriginIsolated === true;
  const threads = params.has('threads') ? Number(params.get('threads'))
    : isolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const precision = params.get('precision') ?? 'fp32';
  const t0 = performance.now();
  const vae = await VAE.load(params.get('model') ?? 'model', { precision, threads });
  const loadMs = performance.now() - t0;
  const shape = vae.inputShape, [, , w] = shape, latent = vae.latentDim;
  const used = ort.env.wasm.numThreads;

  const m = vae.meta;
  facts = `${m.model.arch} ${shape.join('×')}${m.dataset ? ` (${m.dataset})` : ''}, latent_dim ${latent}, ${precision} · ` +
    `onnxruntime-web ${ort.env.versions.web}, WebAssembly, ${used} thread${used === 1 ? '' : 's'}` +
    `${isolated ? ' (cross-origin isolated)' : ''} · loaded and sha256-checked in ${loadMs.toFixed(0)} ms`;
  say(facts);

  const state = { z: new Float32Array(latent), sampleZ: null, n: 0, picks: [0, 1], layout: null, encoded: null };
  const zOf = (k) => state.sampleZ.subarray(k * latent, (k + 1) * latent);

  // sliders: one per latent dimension
  const sliders = [];
  for (let i = 0; i < latent; i++) {
    const label = document.createElement('label');
    label.innerHTML = `<span>z${i + 1}</span><input id="z${i}" type="range" min="-3" max="3" step="any"><output></output>`;
    const [input, out] = [label.querySelector('input'), label.querySelector('output')];
    input.addEventListener('input', () => {
      state.z[i] = Number(input.value);
      out.textContent = state.z[i].toFixed(2);
      renderSlider();
    });
    sliders.push([input, out]);
    $('sliders').append(label);
  }
  const setSliders = (z) => {
    state.z.set(z);
    sliders.forEach(([input, out], i) => { input.value = z[i]; out.textContent = z[i].toFixed(2); });
    return renderSlider();
  };
  const renderSlider = latest(async () => {
    const image = await vae.decode(state.z, 1);
    drawImages($('slider-image'), image, 1, shape, { scale: fit(280, 1, w, 12) });
  });

  const renderStrip = latest(async () => {
    const steps = int('steps');
    if (!Number.isInteger(steps) || steps < 2 || steps > 64) throw new Error(`steps must be an integer in 2..64, got ${$('steps').value}`);
    const [za, zb] = state.picks.map(zOf);
    const z = new Float32Array(steps * latent);
    for (let s = 0; s < steps; s++) {
      const t = s / (steps - 1);
      for (let i = 0; i < latent; i++) z[s * latent + i] = (1 - t) * za[i] + t * zb[i];
    }
    const images = await vae.decode(z, steps);
    // one row when it fits at 3x or more (a large image: 84 pixels wide or more), else as many rows as that takes
    const width = $('interpolation').clientWidth - 30, least = Math.min(3, Math.ceil(84 / w));
    const cols = Math.max(1, Math.min(steps, Math.floor((width - PAD) / (least * (w + PAD)))));
    drawImages($('strip'), images, steps, shape, { cols: Math.ceil(steps / Math.ceil(steps / cols)), scale: fit(width, cols, w, 6) });
  });

  let images = null;
  const drawGrid = () => {
    const cols = Math.min(state.n, Math.ceil(Math.sqrt(state.n)));
    const [a, b] = state.picks;
    state.layout = drawImages($('grid'), images, state.n, shape,
      { cols, scale: fit(Math.min(560, $('samples').clientWidth - 30), cols, w, 6), marks: { [a]: MARKS.a, [b]: MARKS.b } });
  };
  const renderSamples = latest(async () => {
    const n = int('n'), seed = int('seed'), temperature = Number($('temperature').value);
    const z = await vae.latents(n, { seed, temperature }); // what vae.sample(n, {seed, temperature}) decodes
    images = await vae.decode(z, n);
    Object.assign(state, { sampleZ: z, n, picks: n > 1 ? [0, 1] : [0, 0] });
    drawGrid();
    await Promise.all([setSliders(zOf(state.picks[1])), renderStrip()]);
  });

  $('sample-form').addEventListener('submit', (e) => { e.preventDefault(); renderSamples(); });
  $('reseed').addEventListener('click', () => { $('seed').value = Math.floor(Math.random() * 1e6); renderSamples(); });
  $('temperature').addEventListener('input', () => {
    $('temperature-value').textContent = Number($('temperature').value).toFixed(2);
    renderSamples();
  });
  $('steps').addEventListener('change', renderStrip);
  $('grid').addEventListener('click', (e) => {
    const { cols, scale, w: iw, h: ih } = state.layout;
    const rect = $('grid').getBoundingClientRect();
    const x = ((e.clientX - rect.left) * $('grid').width) / rect.width / scale;
    const y = ((e.clientY - rect.top) * $('grid').height) / rect.height / scale;
    const col = Math.floor((x - PAD / 2) / (iw + PAD)), row = Math.floor((y - PAD / 2) / (ih + PAD));
    const k = row * cols + col;
    if (col < 0 || col >= cols || k < 0 || k >= state.n) return;
    state.picks = [state.picks[1], k];
    drawGrid();
    setSliders(zOf(k));
    renderStrip();
  });
  $('zero').addEventListener('click', () => setSliders(new Float32Array(latent)));
  $('randomize').addEventListener('click', async () => setSliders(await vae.latents(1)));

  const encoded = setupEncoder(vae, shape, (mu) => { state.encoded = mu; });
  $('edit-encoded').addEventListener('click', () => state.encoded && setSliders(state.encoded));

  await Promise.all([renderSamples(), encoded]);
  // The page is drawn: tests and other pages may drive the model now.
  window.vaeEdge = {
    decode: (z, n) => vae.decode(z, n),
    latentDim: latent, inputShape: shape, precision, threads: used, crossOriginIsolated: isolated, vae,
  };
}

// -- encoding a drawn or uploaded image ----------------------------------------------------------------------

const SWATCHES = ['#000000', '#ffffff', '#e63946', '#f4a261', '#e9c46a', '#2a9d8f', '#277da1', '#6a4c93'];

/** The colour transparent images are composited onto, as the Python runtime's recipe_background and background_rgb
 * read it: vae.json's recipe.background (white, black or #RRGGBB), else white. */
function recipeBackground(meta) {
  const recipe = meta.recipe !== null && typeof meta.recipe === 'object' ? meta.recipe : {};
  const text = 'background' in recipe ? String(recipe.background) : 'white';
  const named = { white: '#ffffff', black: '#000000' }, t = text.trim().toLowerCase();
  if (t in named) return named[t];
  if (/^#[0-9a-f]{6}$/.test(t)) return t;
  throw new Error(`a background is white, black or #RRGGBB (as #808080), got '${text.slice(0, 40)}'`);
}

/** Black or white, whichever stands out more on `hex` (#rrggbb). */
function contrast(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return r * 299 + g * 587 + b * 114 > 127_500 ? '#000000' : '#ffffff';
}

function setupEncoder(vae, [c, h, w], onEncoded) {
  const draw = $('draw'), ctx = draw.getContext('2d');
  const background = recipeBackground(vae.meta);
  // an RGB model draws in colour on its background; a grayscale one keeps a white pen on black, as its digits
  const colour = c === 3;
  const pen = { colour: colour ? contrast(background) : '#ffffff', width: Math.round(draw.width / 12) };
  const clear = (fill = colour ? background : '#000000') => { ctx.fillStyle = fill; ctx.fillRect(0, 0, draw.width, draw.height); };
  let picture = draw; // what is encoded: the pad, or an uploaded image until the pad is drawn on

  // The encoder's input from a picture, by the Python runtime's reading rule (docs/runtime.md): composited onto
  // the background, stretched to W x H, converted to the model's channels. The pad and an upload both come here.
  const small = new OffscreenCanvas(w, h), sctx = small.getContext('2d', { willReadFrequently: true });
  sctx.imageSmoothingQuality = 'high';
  const input = (source) => {
    sctx.fillStyle = background;
    sctx.fillRect(0, 0, w, h);
    sctx.drawImage(source, 0, 0, w, h);
    const rgba = sctx.getImageData(0, 0, w, h).data;
    const x = new Uint8Array(c * h * w);
    const invert = $('invert').checked;
    for (let p = 0; p < h * w; p++) {
      const [r, g, b] = rgba.subarray(4 * p, 4 * p + 3);
      const channels = c === 1 ? [(r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16] : [r, g, b]; // Pillow's "L"
      for (let ch = 0; ch < c; ch++) {
        const v = channels[ch] ?? channels[0];
        x[ch * h * w + p] = invert ? 255 - v : v;
      }
    }
    return x;
  };

  const encode = latest(async () => {
    const x = input(picture);
    const { mu } = await vae.encode(x, 1);
    const reconstruction = await vae.decode(mu, 1);
    drawImages($('seen'), Float32Array.from(x, (v) => v / 255), 1, [c, h, w], { scale: fit(170, 1, w, 12) });
    drawImages($('reconstruction'), reconstruction, 1, [c, h, w], { scale: fit(170, 1, w, 12) });
    onEncoded(mu);
  });
  const drawOnPad = () => {
    if (picture !== draw) picture.close(); // the upload is on the pad now; its own pixels are no longer encoded
    picture = draw;
  };

  let last = null;
  const at = (e) => {
    const rect = draw.getBoundingClientRect();
    return [((e.clientX - rect.left) * draw.width) / rect.width, ((e.clientY - rect.top) * draw.height) / rect.height];
  };
  draw.addEventListener('pointerdown', (e) => {
    draw.setPointerCapture(e.pointerId);
    last = at(e);
    stroke(last, last);
  });
  draw.addEventListener('pointermove', (e) => {
    if (!last) return;
    const p = at(e);
    stroke(last, p);
    last = p;
  });
  draw.addEventListener('pointerup', () => { last = null; });
  function stroke(from, to) {
    drawOnPad();
    Object.assign(ctx, { strokeStyle: pen.colour, lineWidth: pen.width, lineCap: 'round', lineJoin: 'round' });
    ctx.beginPath();
    ctx.moveTo(...from);
    ctx.lineTo(...to);
    ctx.stroke();
    encode();
  }

  if (colour) { // the colour pen: swatches, any colour, and its width
    const choose = (hex) => {
      pen.colour = hex;
      $('pen-colour').value = hex;
      for (const swatch of $('swatches').children) swatch.setAttribute('aria-pressed', swatch.title === hex);
    };
    for (const hex of SWATCHES) {
      const swatch = document.createElement('button');
      Object.assign(swatch, { type: 'button', className: 'swatch', title: hex });
      swatch.style.background = hex;
      swatch.addEventListener('click', () => choose(hex));
      $('swatches').append(swatch);
    }
    $('pen-colour').addEventListener('input', () => choose($('pen-colour').value));
    $('pen-width').value = pen.width;
    $('pen-width').addEventListener('input', () => { pen.width = Number($('pen-width').value); });
    choose(pen.colour);
    $('pen').hidden = false;
  }

  $('clear').addEventListener('click', () => { drawOnPad(); clear(); encode(); });
  $('invert').addEventListener('change', encode);
  $('upload').addEventListener('change', async () => {
    const file = $('upload').files[0];
    if (!file) return;
    try {
      // the colours as stored, no colour profile applied, as Pillow reads them
      const bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none' });
      drawOnPad();
      picture = bitmap;
    } catch (e) {
      say(`cannot read image ${file.name}: ${e.message}`, true);
      return;
    }
    clear(background); // the pad shows it as encoded: on the background, stretched to the model's aspect
    ctx.drawImage(picture, 0, 0, draw.width, draw.height);
    encode();
  });

  // something to encode from the start: a T-shirt, drawn as a person might
  clear();
  ctx.fillStyle = colour ? '#277da1' : '#ddd';
  ctx.beginPath();
  [[95, 40], [185, 40], [250, 90], [222, 130], [195, 110], [195, 250], [85, 250], [85, 110], [58, 130], [30, 90]]
    .forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
  ctx.closePath();
  ctx.fill();
  return encode();
}

main().catch((e) => {
  window.vaeEdgeError = e.message;
  say(`${e.name}: ${e.message}`, true);
});
