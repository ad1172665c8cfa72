// The dashboard (issue 19) in headless Debian chromium, driven by playwright-core, against real
// `qwenmux serve` processes on the tiny model: the page lists the model, a chat message streams
// an answer, a KPI chart gains a point after a request, JSON-schema mode answers in the schema,
// the unload button changes /api/ps, and
// with an API key the page refuses without it and works with it. Prints the page weight and the
// first render time as JSON; screenshots go to QWENMUX_DASHBOARD_ARTIFACTS (default
// build/dashboard-artifacts). No skip: a missing chromium or binary fails the run.
//
// Run: (cd tests/dashboard && npm ci && node --test)   [scripts/test.sh does, after the release build]
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const bin = process.env.QWENMUX_BIN || path.join(root, 'build', 'qwenmux');
const model = path.resolve(root, '..', 'shared', 'testdata', 'models', 'tiny-dense.q8_0.gguf');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = process.env.QWENMUX_DASHBOARD_ARTIFACTS || path.join(root, 'build', 'dashboard-artifacts');
const figures = {};

// Starts `qwenmux serve` on a free port; resolves with {url, proc} once it listens.
function serve(extra) {
  return new Promise((resolve, reject) => {
    const args = ['serve', '--model', model + '=tiny', '--port', '0', '--ctx', '512', '-t', '1',
      '--dashboard-sample-ms', '300', ...extra];
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const timer = setTimeout(() => reject(new Error('serve did not start in 30 s: ' + log)), 30000);
    const onData = (d) => {
      log += d;
      const m = log.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) { clearTimeout(timer); resolve({ url: m[1], proc, log: () => log }); }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error('serve exited ' + code + ': ' + log)); });
  });
}
function stop(s) {
  if (!s) return Promise.resolve();
  return new Promise((resolve) => { s.proc.removeAllListeners('exit'); s.proc.on('exit', resolve); s.proc.kill('SIGTERM'); });
}
async function waitFor(fn, what, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let browser, open, keyed;

before(async () => {
  assert.ok(fs.existsSync(chromiumPath), `chromium not found at ${chromiumPath} (scripts/install-deps.sh installs it)`);
  assert.ok(fs.existsSync(bin), `qwenmux binary not found at ${bin} (build the release preset first)`);
  fs.mkdirSync(artifacts, { recursive: true });
  [open, keyed, browser] = await Promise.all([serve([]), serve(['--api-key', 'dash-secret']),
    chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox', '--disable-gpu'] })]);
});

after(async () => {
  if (browser) await browser.close();
  await Promise.all([stop(open), stop(keyed)]);
  console.log(JSON.stringify({ dashboard: figures }));
  fs.writeFileSync(path.join(artifacts, 'figures.json'), JSON.stringify(figures, null, 2) + '\n');
});

test('page loads with the tiny model listed; weight and first render measured', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const bodies = [];
  page.on('response', async (r) => {
    const u = new URL(r.url());
    if (u.pathname === '/' || u.pathname.startsWith('/dashboard/') && !u.pathname.startsWith('/dashboard/api/')) {
      try { bodies.push(await r.body()); } catch { /* navigation ended */ }
    }
  });
  const t0 = Date.now();
  await page.goto(open.url + '/');
  await page.waitForSelector('#model-table tr[data-model="tiny"]');
  figures.first_render_ms = Date.now() - t0;
  figures.first_contentful_paint_ms = await page.evaluate(() => {
    const p = performance.getEntriesByName('first-contentful-paint')[0];
    return p ? Math.round(p.startTime) : null;
  });
  await waitFor(() => bodies.length >= 3, 'the page, its script and style');
  figures.page_bytes = bodies.reduce((a, b) => a + b.length, 0);
  figures.page_gzip_bytes = bodies.reduce((a, b) => a + zlib.gzipSync(b).length, 0);
  assert.ok(figures.page_gzip_bytes <= 300 * 1024, `page weight ${figures.page_gzip_bytes} B compressed > 300 KB`);
  const text = await page.textContent('#model-table tr[data-model="tiny"]');
  assert.match(text, /tiny/);
  assert.match(text, /unloaded/);
  // Nothing was fetched from another origin.
  const origins = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => new URL(e.name).origin));
  assert.ok(origins.every((o) => o === new URL(open.url).origin), 'only this server was contacted: ' + origins.join(','));
  await page.screenshot({ path: path.join(artifacts, 'overview.png'), fullPage: true });
  await ctx.close();
});

test('a chat message streams an answer with the router choice; a chart gains a point; JSON-schema mode; unload changes /api/ps', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  await page.goto(open.url + '/');
  await page.waitForSelector('#chat-model option[value="tiny"]', { state: 'attached' });
  const nonzero = () => page.getAttribute('#chart-tps svg', 'data-nonzero').then(Number);
  const before = await nonzero();

  await page.selectOption('#chat-model', 'tiny');
  await page.fill('#chat-max', '24');
  await page.fill('#chat-input', 'Hello, who are you?');
  // Count the answer's updates while it streams: more than one means it arrived in pieces.
  await page.evaluate(() => {
    window.__updates = 0;
    new MutationObserver(() => { window.__updates++; })
      .observe(document.querySelector('#chat-log'), { subtree: true, characterData: true, childList: true });
  });
  const problems = [];
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  await page.click('#chat-send');
  try {
    await page.waitForSelector('.msg.assistant[data-state="done"]', { timeout: 30000 });
  } catch (e) {
    throw new Error(e.message + '\nchat log: ' + await page.textContent('#chat-log') + '\npage errors: ' + problems.join('\n'));
  }
  const answer = await page.textContent('.msg.assistant .answer');
  assert.ok(answer.length > 0, 'an answer was shown');
  assert.ok(await page.evaluate(() => window.__updates) > 3, 'the answer arrived in several pieces');
  assert.match(await page.textContent('.msg.assistant .route'), /model tiny · route \w+/);
  await page.screenshot({ path: path.join(artifacts, 'playground.png'), fullPage: true });

  // The request shows in a KPI sample (tokens/s above zero) and in the routing log.
  await waitFor(async () => (await nonzero()) > before, 'a tokens/s point after the request');
  await page.waitForSelector('#routing-table tbody tr');
  assert.match(await page.textContent('#routing-table tbody tr'), /tiny/);

  // JSON-schema mode: the answer is JSON of the schema (the constraint is the server's).
  await page.check('#chat-json');
  await page.fill('#chat-schema', JSON.stringify({ type: 'object', properties: { answer: { enum: ['yes', 'no'] } },
    required: ['answer'], additionalProperties: false }));
  await page.fill('#chat-max', '64');
  await page.fill('#chat-input', 'Is the sky blue? Answer in JSON.');
  await page.click('#chat-send');
  await page.waitForSelector('.msg.assistant:nth-of-type(4)[data-state="done"]', { timeout: 30000 });
  const structured = JSON.parse(await page.textContent('.msg.assistant:nth-of-type(4) .answer'));
  assert.ok(['yes', 'no'].includes(structured.answer), JSON.stringify(structured));

  // Unload through the button: /api/ps no longer lists the model.
  const ps = async () => (await (await fetch(open.url + '/api/ps')).json()).models.map((m) => m.name);
  assert.deepEqual(await ps(), ['tiny']);
  await page.waitForSelector('button[data-action="unload"][data-model="tiny"]:not([disabled])');
  await page.click('button[data-action="unload"][data-model="tiny"]');
  await waitFor(async () => (await ps()).length === 0, '/api/ps to drop the model');
  await page.waitForSelector('#model-table tr[data-model="tiny"] .state-unloaded');
  await page.screenshot({ path: path.join(artifacts, 'after-unload.png'), fullPage: true });
  await ctx.close();
});

test('with an API key the page refuses without the key and works with it', async () => {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: 'dark' });
  const page = await ctx.newPage();
  await page.goto(keyed.url + '/');
  await page.waitForSelector('#auth:not([hidden])');
  assert.equal(await page.locator('#model-table tbody tr').count(), 0, 'no model data without the key');
  const status = await page.evaluate(async () => (await fetch('/dashboard/api/overview')).status);
  assert.equal(status, 401);
  await page.screenshot({ path: path.join(artifacts, 'key-required-phone-dark.png'), fullPage: true });

  await page.fill('#key-input', 'wrong-key');
  await page.press('#key-input', 'Enter');
  await page.waitForSelector('#auth:not([hidden])');
  assert.equal(await page.locator('#model-table tbody tr').count(), 0);

  await page.fill('#key-input', 'dash-secret');
  await page.press('#key-input', 'Enter');
  await page.waitForSelector('#model-table tr[data-model="tiny"]');
  assert.ok(await page.isHidden('#auth'));
  // The key lives in this tab's session storage only.
  assert.equal(await page.evaluate(() => sessionStorage.getItem('qwenmux.apiKey')), 'dash-secret');
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  await page.screenshot({ path: path.join(artifacts, 'keyed-phone-dark.png'), fullPage: true });
  await ctx.close();
});
