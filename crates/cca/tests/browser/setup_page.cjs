// Browser driver of the setup page test (crates/cca/tests/up.rs).
//
//   node setup_page.cjs <setup page url> <github web url> <screenshot file>
//
// Opens cca up's setup page in headless Chromium and checks what a user sees and does: the
// heading and both ways to connect, a form posting a JSON manifest to GitHub's "new App" page,
// and the inline script keeping the manifest and the form's target in step with the fields
// (an organization switches the target, a name goes into the manifest). It then restores the
// defaults, takes a full-page screenshot, prints `OK <file>` and exits 0; any failure exits 1
// with `FAIL <reason>` on stderr.
//
// Environment: CCA_NODE_PREFIX (npm prefix holding playwright-core), CCA_CHROMIUM (browser,
// default /usr/bin/chromium).
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const STEP_TIMEOUT_MS = 30_000;

function fail(reason) {
  process.stderr.write(`FAIL ${reason}\n`);
  process.exit(1);
}

const [pageUrl, githubWeb, shot] = process.argv.slice(2);
if (!pageUrl || !githubWeb || !shot) {
  fail('usage: node setup_page.cjs <setup page url> <github web url> <screenshot file>');
}
const prefix = process.env.CCA_NODE_PREFIX;
if (!prefix) fail('CCA_NODE_PREFIX is not set (scripts/test.sh installs playwright-core there)');
const { chromium } = require(path.join(prefix, 'node_modules', 'playwright-core'));

function check(condition, what) {
  if (!condition) throw new Error(what);
}

async function main() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cca-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CCA_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1100, height: 900 },
    colorScheme: 'light',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const errors = [];
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on('pageerror', (err) => errors.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') errors.push(`console error: ${msg.text()}`);
    });
    const response = await page.goto(pageUrl, { waitUntil: 'load', timeout: STEP_TIMEOUT_MS });
    check(response && response.status() === 200, `the page answered ${response && response.status()}`);

    const heading = await page.locator('h1').innerText();
    check(heading.includes('GitHub'), `heading ${JSON.stringify(heading)}`);
    check(await page.getByText('Create a GitHub App').first().isVisible(), 'no App section');
    check(await page.getByText('personal access token').first().isVisible(), 'no token section');
    check(!(await page.locator('#apply').isVisible()), 'the no-script Apply button shows');

    const form = page.locator('#create-app');
    const read = async () => ({
      action: await form.getAttribute('action'),
      manifest: JSON.parse(await form.locator('input[name=manifest]').inputValue()),
    });
    let now = await read();
    check(now.action.startsWith(`${githubWeb}/settings/apps/new?state=`), `action ${now.action}`);
    check(now.manifest.default_permissions.contents === 'write', 'contents permission');
    check(now.manifest.default_events.includes('issue_comment'), 'issue_comment event');
    const defaults = { name: now.manifest.name, action: now.action };

    await page.fill('#org', 'acme');
    await page.fill('#app-name', 'Team agent');
    now = await read();
    check(now.action.startsWith(`${githubWeb}/organizations/acme/settings/apps/new?state=`),
      `organization action ${now.action}`);
    check(now.manifest.name === 'Team agent', `manifest name ${now.manifest.name}`);
    const shown = await page.locator('#manifest-json').textContent();
    check(JSON.parse(shown).name === 'Team agent', 'the shown manifest is not updated');

    await page.fill('#org', '');
    await page.fill('#app-name', defaults.name);
    now = await read();
    check(now.action === defaults.action, 'the defaults do not come back');
    check(errors.length === 0, errors.join('; '));

    await page.locator('#app-name').blur();
    fs.mkdirSync(path.dirname(shot), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
    process.stdout.write(`OK ${shot}\n`);
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => fail(err && err.stack ? err.stack : String(err)),
);
