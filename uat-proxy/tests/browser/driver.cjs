// Browser driver of the preview proxy test (uat-proxy/tests/browser.rs).
//
//   node driver.cjs <page url> <first text> <second text> <screenshot dir>
//
// Opens the page in headless Chromium, waits for <first text>, checks that Vite's client opened
// its hot-reload WebSocket to the page's own host (through the proxy) and got a frame on it,
// then prints `READY` on stdout. The test then edits the served module; the driver waits for
// <second text> to arrive by hot module replacement (no reload), takes a screenshot, prints
// `OK <screenshot path>` and exits 0. Any failure exits 1 with `FAIL <reason>` on stderr.
//
// Environment: CCA_NODE_PREFIX (npm prefix holding playwright-core), CCA_CHROMIUM (browser,
// default /usr/bin/chromium), CCA_SIGN_IN_HOSTS (comma-separated hosts of a sign-in the page
// load must go through first, such as the auth host and GitHub's; requests to them are expected,
// and each must have been visited).
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const TOTAL_TIMEOUT_MS = 90_000;
const STEP_TIMEOUT_MS = 30_000;

function fail(reason) {
  process.stderr.write(`FAIL ${reason}\n`);
  process.exit(1);
}

const [pageUrl, firstText, secondText, outDir] = process.argv.slice(2);
if (!pageUrl || !firstText || !secondText || !outDir) {
  fail('usage: node driver.cjs <page url> <first text> <second text> <screenshot dir>');
}
const prefix = process.env.CCA_NODE_PREFIX;
if (!prefix) fail('CCA_NODE_PREFIX is not set (scripts/test.sh installs playwright-core there)');
const { chromium } = require(path.join(prefix, 'node_modules', 'playwright-core'));

const expectedHost = new URL(pageUrl).host;
const signInHosts = (process.env.CCA_SIGN_IN_HOSTS || '').split(',').filter(Boolean);
const signInVisited = new Set();
const log = [];
const note = (line) => log.push(line);

const watchdog = setTimeout(() => {
  process.stderr.write(log.map((l) => `  ${l}\n`).join(''));
  fail(`no result within ${TOTAL_TIMEOUT_MS} ms`);
}, TOTAL_TIMEOUT_MS);
watchdog.unref();

// Waits until `check()` is true, polling; fails with `what` after STEP_TIMEOUT_MS.
async function until(what, check) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function main() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cca-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CCA_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 900, height: 420 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = context.pages()[0] || (await context.newPage());

    // Every request and WebSocket the page makes, to check that all of it went to the proxy.
    const strayRequests = [];
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (signInHosts.includes(url.host)) {
        signInVisited.add(url.host);
        note(`sign-in: ${request.url().split('?')[0]}`);
      } else if ((url.protocol === 'http:' || url.protocol === 'ws:') && url.host !== expectedHost) {
        strayRequests.push(request.url());
      }
    });
    page.on('console', (msg) => note(`console.${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => note(`page error: ${err.message}`));

    const sockets = [];
    page.on('websocket', (ws) => {
      const entry = { url: ws.url(), frames: [], closed: false };
      sockets.push(entry);
      note(`websocket opened: ${entry.url}`);
      ws.on('framereceived', (frame) => entry.frames.push(String(frame.payload)));
      ws.on('close', () => {
        entry.closed = true;
        note(`websocket closed: ${entry.url}`);
      });
      ws.on('socketerror', (err) => note(`websocket error: ${entry.url}: ${err}`));
    });
    const viaProxy = () =>
      sockets.find((s) => new URL(s.url).host === expectedHost && s.frames.length > 0);

    const response = await page.goto(pageUrl, { waitUntil: 'load', timeout: STEP_TIMEOUT_MS });
    if (!response) throw new Error('no response for the page');
    if (response.status() !== 200) throw new Error(`page answered ${response.status()}`);
    if (new URL(page.url()).host !== expectedHost) throw new Error(`the page ended on ${page.url()}`);
    const skipped = signInHosts.filter((h) => !signInVisited.has(h));
    if (skipped.length > 0) throw new Error(`the page load never went through ${skipped.join(', ')}`);

    const message = page.locator('#message');
    await message.filter({ hasText: firstText }).waitFor({ timeout: STEP_TIMEOUT_MS });
    await until(`a hot-reload WebSocket to ${expectedHost} with a frame`, () => viaProxy());
    const socket = viaProxy();
    note(`hot-reload socket: ${socket.url} (first frame ${socket.frames[0]})`);

    // A reload would drop this marker; hot module replacement keeps it.
    await page.evaluate(() => {
      window.__ccaNoReload = true;
    });
    const framesBefore = socket.frames.length;
    process.stdout.write('READY\n');

    await message.filter({ hasText: secondText }).waitFor({ timeout: STEP_TIMEOUT_MS });
    const kept = await page.evaluate(() => window.__ccaNoReload === true);
    if (!kept) throw new Error('the page reloaded instead of updating in place');
    const updates = socket.frames.slice(framesBefore).filter((f) => f.includes('"update"'));
    if (updates.length === 0) {
      throw new Error(`no update frame on ${socket.url} before the new text appeared`);
    }
    if (socket.closed) throw new Error(`the hot-reload socket ${socket.url} closed`);
    if (strayRequests.length > 0) {
      throw new Error(`requests bypassed the proxy: ${strayRequests.join(', ')}`);
    }

    fs.mkdirSync(outDir, { recursive: true });
    const shot = path.join(outDir, 'preview-proxy.png');
    await page.screenshot({ path: shot });
    process.stdout.write(`OK ${shot}\n`);
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(log.map((l) => `  ${l}\n`).join(''));
    fail(err && err.stack ? err.stack : String(err));
  },
);
