// Drives sluice's console (the admin listener's page) in Debian's Chromium, against a sluice
// running the quickstart (topic `orders` with 4 partitions, trigger `log-orders` → command
// function `logger` at min 0, with a short idle timeout):
//
//   node tests/browser/console.mjs ADMIN_URL SCREENSHOT_DIR
//
// Each check prints one JSON line on stdout ({"check": ..., "ok": true, ...figures}); the first
// failure prints {"ok": false} and a sentence on stderr and exits 1. Producing is the caller's
// job: the script prints {"step":"produce"} and waits for a line `ok` on stdin, after which
// 10,000 records are expected on `orders`. Every wait is bounded and the whole run by 3 minutes.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const WAIT = 30_000;
const DELIVERY_WAIT = 100_000; // for the 10,000 records to be delivered, after the produce
const IDLE_WAIT = 30_000;      // for the function to go back to zero instances
const TOTAL = 180_000;
const SAMPLE_MS = 200;         // how often the page's figures are read during the produce
const PRODUCED = 10_000;

const [adminUrl, shots] = process.argv.slice(2);
if (!adminUrl || !shots) {
  console.error('usage: node tests/browser/console.mjs ADMIN_URL SCREENSHOT_DIR');
  process.exit(2);
}

const started = Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
let current = 'launch';
const pass = (check, figures = {}) => emit({ check, ok: true, ...figures });

// ---- the step protocol on stdin ---------------------------------------------------------
const lines = [];
let stdinClosed = false;
let wake = () => {};
const rl = createInterface({ input: process.stdin });
rl.on('line', (l) => { if (l.trim()) lines.push(l.trim()); wake(); });
rl.on('close', () => { stdinClosed = true; wake(); });

async function step(name) {
  emit({ step: name });
  const deadline = Date.now() + WAIT;
  for (;;) {
    if (lines.length) {
      const line = lines.shift();
      if (line === 'ok') return;
      throw new Error(`expected "ok" on stdin after step ${name}, got ${JSON.stringify(line)}`);
    }
    if (stdinClosed) throw new Error(`stdin closed while waiting for "ok" after step ${name}`);
    if (Date.now() > deadline) throw new Error(`no "ok" on stdin within ${WAIT / 1000} s after step ${name}`);
    await new Promise((r) => { wake = r; setTimeout(r, 250); });
  }
}

// ---- page helpers -----------------------------------------------------------------------
async function until(what, probe, timeout = WAIT) {
  const t0 = Date.now();
  while (Date.now() - t0 < timeout) {
    let v;
    try { v = await probe(); } catch { v = undefined; } // mid-render
    if (v) return { value: v, ms: Date.now() - t0 };
    await sleep(100);
  }
  throw new Error(`timed out after ${timeout / 1000} s waiting for ${what}`);
}

const NODE = (kind, name) => `g.node[data-kind="${kind}"][data-name="${name}"]`;
const EDGE = (from, to) => `path.edge[data-from="${from}"][data-to="${to}"]`;
const TRIGGER = NODE('trigger', 'log-orders');
const FUNCTION = NODE('function', 'logger');

// The figures the page shows now: the texts of the nodes' fields (numbers as shown, without
// separators).
const figures = (page) => page.evaluate(([trigger, fn]) => {
  const text = (sel) => document.querySelector(sel)?.textContent ?? null;
  const digits = (t) => (t === null || !/\d/.test(t) ? null : Number(t.replace(/[^\d.]/g, '')));
  return {
    instances: digits(text(`${fn} [data-field="instances"]`)),
    cold_starts: digits(text(`${fn} [data-field="cold_starts"]`)),
    delivered: digits(text(`${trigger} [data-field="delivered"]`)),
    rate: digits(text(`${trigger} [data-field="rate"]`)),
    lag: digits(text(`${trigger} [data-field="lag"]`)),
  };
}, [TRIGGER, FUNCTION]);

// Reads the figures every SAMPLE_MS until stopped.
function sampler(page) {
  const samples = [];
  let running = true;
  const t0 = Date.now();
  const done = (async () => {
    while (running) {
      const t = Date.now();
      try { samples.push({ ms: t - t0, ...(await figures(page)) }); } catch { /* mid-render */ }
      await sleep(Math.max(0, SAMPLE_MS - (Date.now() - t)));
    }
  })();
  return { samples, t0, stop: async () => { running = false; await done; } };
}

// ---- the run ----------------------------------------------------------------------------
const userDataDir = mkdtempSync(join(tmpdir(), 'sluice-console-'));
let context;
let page;
const pageErrors = [];
const consoleLines = [];

async function main() {
  mkdirSync(shots, { recursive: true });
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
    timeout: WAIT,
  });
  context.setDefaultTimeout(WAIT);
  context.setDefaultNavigationTimeout(WAIT);
  page = context.pages()[0] ?? await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    consoleLines.push(`${m.type()}: ${m.text()}`);
    if (consoleLines.length > 30) consoleLines.shift();
  });

  current = 'page-live';
  await page.goto(adminUrl);
  const live = await until('the page to be in contact (#contact[data-state=live], #updated set)', () => page.evaluate(() => {
    const c = document.querySelector('#contact');
    const u = document.querySelector('#updated');
    return c?.dataset.state === 'live' && u?.dataset.ms ? { updated: u.textContent } : null;
  }));
  const brokerBanner = await page.$eval('#broker-banner', (e) => (e.hidden ? null : e.textContent));
  if (brokerBanner) throw new Error(`the page shows the broker banner: ${brokerBanner}`);
  pass(current, { ms: live.ms, updated: live.value.updated, browser: context.browser()?.version() ?? null });

  // a. The quickstart's graph, and the function at zero instances.
  current = 'graph';
  const wanted = [
    NODE('topic', 'orders'), TRIGGER, FUNCTION,
    EDGE('topic:orders', 'trigger:log-orders'), EDGE('trigger:log-orders', 'function:logger'),
  ];
  const graph = await until(`the graph to show ${wanted.join(', ')}`, async () => {
    for (const sel of wanted) if (!(await page.$(sel))) return null;
    const f = await figures(page);
    return f.instances !== null && f.delivered !== null ? f : null;
  });
  if (graph.value.instances !== 0) throw new Error(`the function shows ${graph.value.instances} instances before any record, not 0`);
  const counts = await page.evaluate(() => ({
    nodes: [...document.querySelectorAll('g.node')].map((n) => `${n.dataset.kind}:${n.dataset.name}`),
    edges: document.querySelectorAll('path.edge').length,
  }));
  const partitions = await page.$eval(`${NODE('topic', 'orders')} [data-field="partitions"]`, (e) => e.textContent);
  if (partitions !== '4') throw new Error(`topic orders shows ${partitions} partitions, not 4`);
  pass(current, { ms: graph.ms, nodes: counts.nodes, edges: counts.edges, instances: graph.value.instances,
    delivered_before: graph.value.delivered });

  // b. 10,000 records: delivered rises to 10,000 and the function goes from 0 instances to 1+.
  current = 'produce';
  const before = graph.value.delivered;
  const s = sampler(page);
  await sleep(3 * SAMPLE_MS);
  await step('produce');
  const okAt = Date.now() - s.t0;
  const reached = await until(`the trigger to show ${PRODUCED} more delivered (it showed ${before})`, async () => {
    const last = s.samples[s.samples.length - 1];
    return last && last.delivered >= before + PRODUCED ? last : null;
  }, DELIVERY_WAIT);
  const upTo = await until('the function to show at least 1 instance', () => s.samples.find((x) => x.instances >= 1), WAIT);
  const seen = s.samples.filter((x) => x.delivered !== null);
  for (let i = 1; i < seen.length; i++) {
    if (seen[i].delivered < seen[i - 1].delivered) {
      throw new Error(`delivered went back from ${seen[i - 1].delivered} to ${seen[i].delivered}`);
    }
  }
  const distinct = [...new Set(seen.map((x) => x.delivered))];
  const between = distinct.filter((v) => v > before && v < before + PRODUCED);
  if (!between.length) {
    throw new Error(`the page never showed a delivered count between ${before} and ${before + PRODUCED} (it showed ${distinct.join(', ')}): it does not follow the delivery live`);
  }
  if (s.samples[0].instances !== 0) throw new Error(`the function showed ${s.samples[0].instances} instances before the produce, not 0`);
  const maxRate = Math.max(...s.samples.map((x) => x.rate ?? 0));
  if (!(maxRate > 0)) throw new Error('the trigger never showed a delivery rate above 0');
  pass(current, {
    delivered: reached.value.delivered, reads: distinct.length, intermediate: between.length, delivered_ms: reached.value.ms - okAt,
    instances_up_ms: upTo.value.ms - okAt, max_instances: Math.max(...s.samples.map((x) => x.instances ?? 0)),
    cold_starts: reached.value.cold_starts, max_rate: maxRate, samples: s.samples.length,
  });

  // c. After the idle timeout, back to zero instances.
  current = 'scale-to-zero';
  const down = await until('the function to show 0 instances again', () => {
    const last = s.samples[s.samples.length - 1];
    return last && last.instances === 0 && last.ms > upTo.value.ms ? last : null;
  }, IDLE_WAIT);
  await s.stop();
  const path = [];
  for (const x of s.samples) if (x.instances !== null && x.instances !== path[path.length - 1]) path.push(x.instances);
  pass(current, { ms: down.ms, after_delivered_ms: down.value.ms - reached.value.ms, instances_seen: path });

  // d. The trigger's hover card and detail panel: 4 partitions at lag 0; screenshots.
  current = 'detail';
  await page.hover(TRIGGER);
  const hover = await until('the hover card to show the lag of 4 partitions', () => page.evaluate(() => {
    const t = document.querySelector('#tooltip');
    const rows = t && !t.hidden ? [...t.querySelectorAll('tr')] : [];
    return rows.length === 4 && rows.every((r) => r.querySelector('[data-field="lag"]'))
      ? rows.map((r) => [...r.cells].map((c) => c.textContent).join('=')) : null;
  }));
  await page.click(TRIGGER);
  await page.mouse.move(1, 1);
  const panel = await until('the detail panel of log-orders with 4 partitions at lag 0', () => page.evaluate(() => {
    const d = document.querySelector('#detail');
    if (!d || d.hidden || d.querySelector('[data-field="name"]')?.textContent !== 'log-orders') return null;
    const rows = [...d.querySelectorAll('#partitions tr')].map((r) => ({
      partition: Number(r.dataset.partition),
      committed: r.querySelector('[data-field="committed"]')?.textContent,
      high: r.querySelector('[data-field="high"]')?.textContent,
      lag: r.querySelector('[data-field="lag"]')?.textContent,
    }));
    return rows.length === 4 && rows.every((r) => r.lag === '0') ? rows : null;
  }));
  const dl = await until('the dead letters to be read', () => page.evaluate(() => {
    const t = document.querySelector('#dead-letters');
    const state = t?.dataset.state;
    return state && state !== 'idle' && state !== 'loading'
      ? { state, rows: t.querySelectorAll('tr').length, note: document.querySelector('#dead-letters-note')?.textContent ?? '' } : null;
  }));
  if (dl.value.state === 'error') throw new Error(`the detail panel could not read the dead letters: ${dl.value.note}`);
  const group = await page.$eval('#detail [data-field="group"]', (e) => e.textContent);
  await page.screenshot({ path: join(shots, 'console.png'), fullPage: true });
  await page.locator('#graph').screenshot({ path: join(shots, 'console-graph.png') });
  pass(current, { ms: panel.ms, group, partitions: panel.value, hover: hover.value,
    dead_letters: dl.value.state, dead_letter_rows: dl.value.rows, dir: shots, files: ['console.png', 'console-graph.png'] });

  // e. Nothing thrown in the page.
  current = 'no-page-errors';
  if (pageErrors.length) throw new Error(`uncaught errors in the page: ${pageErrors.join('; ')}`);
  pass(current, { seconds: Math.round((Date.now() - started) / 100) / 10 });
}

async function cleanup() {
  try { await context?.close(); } catch { /* already gone */ }
  try { rmSync(userDataDir, { recursive: true, force: true }); } catch { /* best effort */ }
}

setTimeout(async () => {
  emit({ check: current, ok: false, error: `the run took longer than ${TOTAL / 1000} s` });
  console.error(`console.mjs: the run took longer than ${TOTAL / 1000} s (during "${current}")`);
  await Promise.race([cleanup(), sleep(5000)]);
  process.exit(1);
}, TOTAL).unref();

try {
  await main();
  await cleanup();
  process.exit(0);
} catch (err) {
  const message = String(err?.message ?? err).replace(/\u001b\[[0-9;]*m/g, '').trim(); // Playwright colours its call logs
  emit({ check: current, ok: false, error: message });
  console.error(`console.mjs: check "${current}" failed: ${message}`);
  if (consoleLines.length) console.error(`recent browser console:\n  ${consoleLines.join('\n  ')}`);
  if (pageErrors.length) console.error(`uncaught page errors:\n  ${pageErrors.join('\n  ')}`);
  try { await page?.screenshot({ path: join(shots, 'console-fail.png'), fullPage: true, timeout: 5000 }); } catch { /* best effort */ }
  await Promise.race([cleanup(), sleep(5000)]);
  process.exit(1);
}
