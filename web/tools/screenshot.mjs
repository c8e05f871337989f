#!/usr/bin/env node
// A screenshot of the demo page as it opens (the README's picture):
//   node tools/screenshot.mjs [--site site] [--out screenshot.png] [--width 1280]

import { openSite, waitForModel } from './chromium.mjs';

const opts = { site: 'site', out: 'screenshot.png', width: '1280' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  if (!['--site', '--out', '--width'].includes(argv[i]) || i + 1 >= argv.length) {
    console.error(`error: unknown argument ${argv[i]}; usage: screenshot.mjs [--site site] [--out FILE] [--width PX]`);
    process.exit(2);
  }
  opts[argv[i].slice(2)] = argv[i + 1];
}
const { page, close } = await openSite(opts.site, { viewport: { width: Number(opts.width), height: 800 } });
try {
  await waitForModel(page);
  await page.screenshot({ path: opts.out, fullPage: true });
  console.log(`wrote ${opts.out}`);
} finally {
  await close();
}
