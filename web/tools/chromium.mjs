// Debian's Chromium, headless, driven by playwright-core (a browser download cannot work here), on a site
// served by serve.mjs on a free local port. Shared by the page check and the page benchmark.

import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { serve } from '../serve.mjs';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// Without the networking flags Chromium keeps trying to reach Google's services, which this machine refuses.
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * Serve `site` (isolate: COOP/COEP on) and open a fresh Chromium on it. Every request that leaves the local
 * server is refused and recorded in `outside`: the page must need none. Call close() when done.
 */
export async function openSite(site, { isolate = true, query = '', viewport = { width: 1280, height: 900 } } = {}) {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install chromium)`);
  const server = await serve(site, { port: 0, isolate });
  const origin = `http://127.0.0.1:${server.address().port}`;
  const profile = await mkdtemp(path.join(os.tmpdir(), 'vae-edge-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: FLAGS, viewport,
  });
  const outside = [], errors = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(origin) || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
    outside.push(url);
    return route.abort();
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && errors.push(`console error: ${m.text()}`));
  page.on('response', (r) => r.status() >= 400 && errors.push(`HTTP ${r.status()} for ${r.url()}`));
  await page.goto(`${origin}/${query}`);
  const close = async () => {
    await context.close();
    await new Promise((resolve) => server.close(resolve));
    await rm(profile, { recursive: true, force: true });
  };
  return { page, context, origin, outside, errors, close };
}

/** Wait for the page's model: window.vaeEdge, or the error it showed. */
export async function waitForModel(page, timeout = 60_000) {
  await page.waitForFunction(() => window.vaeEdge || window.vaeEdgeError, null, { timeout });
  const error = await page.evaluate(() => window.vaeEdgeError);
  if (error) throw new Error(`the page could not load its model: ${error}`);
}
