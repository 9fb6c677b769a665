// Opens sluice's console in Debian's Chromium and checks that it draws what a running
// example has: the page is in contact, each expected node is there, and the page throws
// nothing. Then it takes a screenshot.
//
//   node tests/browser/console-smoke.mjs ADMIN_URL SCREENSHOT_FILE KIND:NAME...
//
// Prints one JSON line ({"ok": true, "nodes": [...]}) and exits 0, or a sentence on stderr
// and exits 1. Bounded: 60 s in all.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [adminUrl, shot, ...expected] = process.argv.slice(2);
if (!adminUrl || !shot || expected.length === 0) {
  console.error('usage: node tests/browser/console-smoke.mjs ADMIN_URL SCREENSHOT_FILE KIND:NAME...');
  process.exit(2);
}
const timer = setTimeout(() => { console.error('console-smoke: over 60 s'); process.exit(1); }, 60_000);
const profile = mkdtempSync(join(tmpdir(), 'sluice-console-'));
const errors = [];
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(adminUrl);
  await page.waitForSelector('#contact[data-state=live]', { timeout: 30_000 });
  const found = [];
  for (const node of expected) {
    const [kind, ...rest] = node.split(':');
    const name = rest.join(':');
    await page.waitForSelector(`g.node[data-kind="${kind}"][data-name="${name}"]`, { timeout: 30_000 });
    found.push(node);
  }
  // A second for the figures of a poll or two to settle before the picture.
  await page.waitForTimeout(1500);
  await page.screenshot({ path: shot, fullPage: true });
  if (errors.length) throw new Error(`the page threw: ${errors.join('; ')}`);
  process.stdout.write(`${JSON.stringify({ ok: true, nodes: found, shot })}\n`);
} catch (err) {
  console.error(`console-smoke: ${String(err.message ?? err).replace(/\x1b\[[0-9;]*m/g, '')}`);
  process.exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(timer);
}
