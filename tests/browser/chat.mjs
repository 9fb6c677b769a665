// Drives the chat example in Debian's Chromium against two sluice replicas serving it:
//
//   node tests/browser/chat.mjs URL_A URL_B SCREENSHOT_DIR
//
// Page A (alice) is opened on URL_A and page B (bob) on URL_B. Each check prints one JSON
// line on stdout ({"check": ..., "ok": true, ...figures}); the first failure prints
// {"ok": false} and a sentence on stderr and exits 1. Taking a replica down is the caller's
// job: the script prints {"step":"kill-b"} or {"step":"restart-b"} and waits for a line `ok`
// on stdin. Every wait is bounded (30 s at most) and the whole run by 3 minutes.
//
// Messages carry a random tag, so the checks hold on a topic that has older messages.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const WAIT = 30_000;
const TOTAL = 180_000;
const SETTLE = 600; // ms to let a duplicate arrive before counting

const [urlA, urlB, shots] = process.argv.slice(2);
if (!urlA || !urlB || !shots) {
  console.error('usage: node tests/browser/chat.mjs URL_A URL_B SCREENSHOT_DIR');
  process.exit(2);
}

const started = Date.now();
const tag = `#${Math.random().toString(36).slice(2, 7)}`;
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
    try { v = await probe(); } catch { v = undefined; } // mid-navigation
    if (v) return { value: v, ms: Date.now() - t0 };
    await sleep(100);
  }
  throw new Error(`timed out after ${timeout / 1000} s waiting for ${what}`);
}

const messages = (page) => page.$$eval('#messages .message', (els) => els.map((e) => ({
  p: Number(e.dataset.partition),
  o: Number(e.dataset.offset),
  user: e.querySelector('.user')?.textContent ?? '',
  text: e.querySelector('.text')?.textContent ?? '',
})));
const ours = (list) => list.filter((m) => m.text.endsWith(tag));
const status = (page) => page.$eval('#status', (e) => ({ state: e.dataset.state, text: e.textContent }));
const shows = async (page, text) => (await messages(page)).some((m) => m.text === text);

async function say(page, text) {
  await page.fill('#message', text, { timeout: WAIT });
  await page.press('#message', 'Enter', { timeout: WAIT });
}

function noDuplicates(label, list) {
  const seen = new Set();
  for (const m of list) {
    const k = `${m.p}:${m.o}`;
    if (seen.has(k)) throw new Error(`page ${label} shows the record at partition ${m.p} offset ${m.o} twice`);
    seen.add(k);
  }
}

async function exactlyOnce(label, page, text, user) {
  const list = await messages(page);
  noDuplicates(label, list);
  const hits = list.filter((m) => m.text === text);
  if (hits.length !== 1) throw new Error(`page ${label} shows "${text}" ${hits.length} times, not once`);
  if (hits[0].user !== user) throw new Error(`page ${label} shows "${text}" from "${hits[0].user}", not "${user}"`);
  return hits[0];
}

async function waitLive(label, page, timeout = WAIT) {
  const r = await until(`page ${label} to be live (#status[data-state=live])`, async () => {
    const s = await status(page);
    return s.state === 'live' && s;
  }, timeout);
  return { ms: r.ms, status: r.value.text };
}

// ---- the run ----------------------------------------------------------------------------
const userDataDir = mkdtempSync(join(tmpdir(), 'sluice-chat-'));
let context;
const pageErrors = [];
const consoleLines = [];
const sockets = { A: [], B: [] };

function watch(label, page) {
  page.on('pageerror', (e) => pageErrors.push(`page ${label}: ${e.message}`));
  page.on('console', (m) => {
    consoleLines.push(`page ${label} ${m.type()}: ${m.text()}`);
    if (consoleLines.length > 30) consoleLines.shift();
  });
  page.on('websocket', (ws) => sockets[label].push(ws.url()));
}

async function main() {
  mkdirSync(shots, { recursive: true });
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 640, height: 900 },
    timeout: WAIT,
  });
  context.setDefaultTimeout(WAIT);
  context.setDefaultNavigationTimeout(WAIT);
  const A = context.pages()[0] ?? await context.newPage();
  const B = await context.newPage();
  watch('A', A);
  watch('B', B);

  current = 'pages-live';
  await A.goto(urlA);
  await B.goto(urlB);
  await A.fill('#name', 'alice');
  await B.fill('#name', 'bob');
  const liveA = await waitLive('A', A);
  const liveB = await waitLive('B', B);
  pass(current, { a_ms: liveA.ms, b_ms: liveB.ms, a_status: liveA.status, b_status: liveB.status,
    browser: context.browser()?.version() ?? null });

  // a. Both ways, each message exactly once on both pages.
  for (const [check, from, fromPage, user, to, toPage] of [
    ['a-to-b', 'A', A, 'alice', 'B', B], ['b-to-a', 'B', B, 'bob', 'A', A],
  ]) {
    current = check;
    const text = `hello from ${user} ${tag}`;
    await say(fromPage, text);
    const there = await until(`"${text}" on page ${to}`, () => shows(toPage, text));
    const here = await until(`"${text}" on page ${from}`, () => shows(fromPage, text));
    await sleep(SETTLE);
    const m = await exactlyOnce(to, toPage, text, user);
    await exactlyOnce(from, fromPage, text, user);
    pass(check, { text, partition: m.p, offset: m.o, [`to_${to.toLowerCase()}_ms`]: there.ms, [`to_${from.toLowerCase()}_ms`]: here.ms });
  }

  // b. B away while A sends 20; back, it shows everything once and in order.
  current = 'resume-after-away';
  const beforeB = await messages(B);
  await B.goto('about:blank');
  const missed = Array.from({ length: 20 }, (_, i) => `missed ${i + 1}/20 ${tag}`);
  for (const text of missed) await say(A, text);
  await until('page A to show all 20 messages it sent', async () => {
    const texts = new Set(ours(await messages(A)).map((m) => m.text));
    return missed.every((t) => texts.has(t));
  });
  const socketsBefore = sockets.B.length;
  await B.goto(urlB);
  const back = await waitLive('B', B);
  const caught = await until('page B to show the 20 messages it missed', async () => {
    const texts = new Set((await messages(B)).map((m) => m.text));
    return missed.every((t) => texts.has(t));
  });
  await sleep(SETTLE);
  const afterB = await messages(B);
  noDuplicates('B', afterB);
  const resumedWith = sockets.B[socketsBefore] ?? '';
  if (!/[?&]since=/.test(resumedWith)) throw new Error(`page B reconnected with ${resumedWith || 'no WebSocket'}, not with ?since=`);
  const key = (m) => `${m.p}:${m.o}:${m.user}:${m.text}`;
  const kept = afterB.slice(0, beforeB.length).map(key);
  if (kept.join('\n') !== beforeB.map(key).join('\n')) {
    throw new Error(`page B no longer shows the ${beforeB.length} messages it showed before it went away, in the same order`);
  }
  const added = afterB.slice(beforeB.length);
  if (added.map((m) => m.text).join('\n') !== missed.join('\n')) {
    throw new Error(`page B shows ${JSON.stringify(added.map((m) => m.text))} after its earlier messages, not the 20 missed ones once each in order`);
  }
  for (let i = 1; i < afterB.length; i++) {
    if (afterB[i].p === afterB[i - 1].p && afterB[i].o <= afterB[i - 1].o) {
      throw new Error(`page B shows offset ${afterB[i].o} after offset ${afterB[i - 1].o} of partition ${afterB[i].p}`);
    }
  }
  const aTexts = ours(await messages(A)).map((m) => m.text);
  const bTexts = ours(afterB).map((m) => m.text);
  if (aTexts.join('\n') !== bTexts.join('\n')) throw new Error('pages A and B show this run\'s messages differently');
  pass(current, { earlier: beforeB.length, missed: missed.length, shown: afterB.length,
    resumed_with: new URL(resumedWith).search, live_ms: back.ms, catch_up_ms: caught.ms });

  // c. Screenshots, separately and side by side.
  current = 'screenshots';
  await A.screenshot({ path: join(shots, 'chat-a.png') });
  await B.screenshot({ path: join(shots, 'chat-b.png') });
  const both = await context.newPage();
  const img = async (p) => `data:image/png;base64,${(await p.screenshot()).toString('base64')}`;
  await both.setViewportSize({ width: 1300, height: 920 });
  await both.setContent(`<body style="margin:0;padding:10px;display:flex;gap:10px;background:#d9dce3">
    <img src="${await img(A)}" style="width:640px;box-shadow:0 1px 4px #0003">
    <img src="${await img(B)}" style="width:640px;box-shadow:0 1px 4px #0003"></body>`);
  await both.screenshot({ path: join(shots, 'chat-ab.png') });
  await both.close();
  pass(current, { dir: shots, files: ['chat-a.png', 'chat-b.png', 'chat-ab.png'] });

  // d. Replica B goes away and comes back.
  current = 'b-down';
  await step('kill-b');
  const down = await until('page B to show #status[data-state=disconnected]', async () => {
    const s = await status(B);
    return s.state === 'disconnected' && s;
  }, 15_000);
  await B.screenshot({ path: join(shots, 'chat-b-down.png') });
  const aMeanwhile = await status(A);
  if (aMeanwhile.state !== 'live') throw new Error(`page A is "${aMeanwhile.state}" while only replica B is down`);
  pass(current, { ms: down.ms, b_status: down.value.text, a_state: aMeanwhile.state, file: 'chat-b-down.png' });

  current = 'b-back';
  const socketsDown = sockets.B.length;
  await step('restart-b');
  const up = await waitLive('B', B);
  const latest = sockets.B.slice(socketsDown).pop() ?? '';
  pass(current, { ms: up.ms, b_status: up.status, resumed_with: latest ? new URL(latest).search : null });

  current = 'after-restart';
  const text = `after the restart ${tag}`;
  await say(A, text);
  const there = await until(`"${text}" on page B`, () => shows(B, text));
  await until(`"${text}" on page A`, () => shows(A, text));
  await sleep(SETTLE);
  await exactlyOnce('B', B, text, 'alice');
  await exactlyOnce('A', A, text, 'alice');
  const finalA = ours(await messages(A)).map((m) => m.text);
  const finalB = ours(await messages(B)).map((m) => m.text);
  if (finalA.join('\n') !== finalB.join('\n')) throw new Error('pages A and B show this run\'s messages differently after the restart');
  pass(current, { text, to_b_ms: there.ms, messages: finalB.length });

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
  console.error(`chat.mjs: the run took longer than ${TOTAL / 1000} s (during "${current}")`);
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
  console.error(`chat.mjs: check "${current}" failed: ${message}`);
  if (consoleLines.length) console.error(`recent browser console:\n  ${consoleLines.join('\n  ')}`);
  if (pageErrors.length) console.error(`uncaught page errors:\n  ${pageErrors.join('\n  ')}`);
  for (const [name, page] of [['chat-fail-a.png', context?.pages()[0]], ['chat-fail-b.png', context?.pages()[1]]]) {
    try { await page?.screenshot({ path: join(shots, name), timeout: 5000 }); } catch { /* best effort */ }
  }
  await Promise.race([cleanup(), sleep(5000)]);
  process.exit(1);
}
