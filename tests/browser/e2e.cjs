// The dashboard in a real browser: Debian's Chromium driven by playwright-core, every page
// checked by axe-core for WCAG 2.1 A and AA, a screenshot of each. Run by tests/browser.rs
// against `varde demo`, which passes the URL and the demo accounts' passwords:
//   VARDE_URL, ANALYST_PASSWORD, BERGEN_PASSWORD, ADMIN_PASSWORD, ARTIFACTS (screenshots),
//   CHROMIUM (optional).
// Prints one JSON line with what it checked; exits non-zero with the reason on any failure.
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');
const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const url = process.env.VARDE_URL.replace(/\/$/, '');
const artifacts = process.env.ARTIFACTS;
fs.mkdirSync(artifacts, { recursive: true });
const summary = { pages_audited: [], checks: [] };

function check(ok, what) {
  if (!ok) throw new Error(`failed: ${what}`);
  summary.checks.push(what);
}

// axe-core on the page as it is now (WCAG 2.0 and 2.1, levels A and AA), then a screenshot.
async function audit(page, name) {
  // Through the DevTools protocol, which the dashboard's Content-Security-Policy (no inline
  // script) does not apply to; a <script> tag would be refused, as it should be.
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
  if (result.violations.length > 0) {
    const detail = result.violations.map(v =>
      `${v.id} (${v.impact}): ${v.help}; ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | ')}`);
    throw new Error(`axe-core found WCAG 2.1 AA violations on ${name}:\n  ${detail.join('\n  ')}`);
  }
  summary.pages_audited.push(name);
}

// Anything the browser refuses under the dashboard's Content-Security-Policy fails the run.
const refusals = [];
function watch(page) {
  page.on('console', m => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) refusals.push(m.text());
  });
  return page;
}

async function login(browser, name, password) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = watch(await context.newPage());
  await page.goto(`${url}/login`);
  await page.fill('#name', name);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL(`${url}/alerts`), page.click('main button[type=submit]')]);
  return page;
}

// The rule link of the queue row of `tenant` whose rule is `title`.
function rowOf(page, tenant, title) {
  return page.locator('tbody tr', { has: page.locator('td', { hasText: new RegExp(`^${tenant}$`) }) })
    .filter({ hasText: title });
}

const ROOT_LOGIN = 'Successful SSH Password Login as root on a Municipal Server';

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // Chromium's sandbox needs user namespaces a CI container may not give; the page is local.
    args: ['--no-sandbox'],
  });
  try {
    // The login page, as anyone sees it.
    const anonymous = watch(await browser.newPage());
    await anonymous.goto(`${url}/login`);
    await audit(anonymous, 'login');
    await anonymous.close();

    // The analyst: the queue with the planted root logins of Bergen and Bodø.
    const analyst = await login(browser, 'analytiker', process.env.ANALYST_PASSWORD);
    await audit(analyst, 'queue');
    check(await rowOf(analyst, '4601', ROOT_LOGIN).count() === 1, 'the queue shows Bergen\'s root login group');
    check(await rowOf(analyst, '1804', ROOT_LOGIN).count() === 1, 'the queue shows Bodø\'s root login group');
    const bodoAlert = await rowOf(analyst, '1804', ROOT_LOGIN).getAttribute('data-alert-id');

    // The live queue: the demo keeps its collectors sending and plants root logins; the page
    // says so in its live region without changing the table, and the link loads them.
    const alertsIn = caption => Number(caption.match(/\((\d+) varsler\)/)[1]);
    const before = alertsIn(await analyst.locator('caption').first().textContent());
    await analyst.locator('#live-notice').waitFor({ state: 'visible', timeout: 30000 });
    const announced = await analyst.locator('#live-notice').textContent();
    check(/(\d+ nye varsler|1 nytt varsel) siden siden ble lastet/.test(announced),
      `the live queue announces new alerts (${announced.trim()})`);
    check(alertsIn(await analyst.locator('caption').first().textContent()) === before,
      'the table does not change under the analyst');
    await audit(analyst, 'queue-live');
    await Promise.all([analyst.waitForURL(/\/alerts\?status=open$/), analyst.click('#live-notice a')]);
    check(alertsIn(await analyst.locator('caption').first().textContent()) > before,
      'the new alerts are in the queue once loaded');

    // Bergen's root login: the alert page, then acknowledged from it.
    await Promise.all([analyst.waitForURL(/\/alerts\/[0-9a-f]{32}$/),
      rowOf(analyst, '4601', ROOT_LOGIN).locator('a[href^="/alerts/"]').click()]);
    await audit(analyst, 'alert');
    check((await analyst.locator('h1').textContent()).includes(ROOT_LOGIN), 'the alert page names the rule');
    await analyst.selectOption('#triage-action', 'acknowledge');
    await Promise.all([analyst.waitForLoadState('load'), analyst.click('button:has-text("Utfør")')]);
    check(await analyst.locator('dd[data-status="acknowledged"]').count() === 1, 'acknowledged from the alert page');
    check((await analyst.locator('main').textContent()).includes('Kvitter'), 'the history shows the acknowledgement');

    // From the queue: the group chosen, an incident opened with it.
    await analyst.goto(`${url}/alerts`);
    const row = rowOf(analyst, '4601', ROOT_LOGIN);
    check(await row.getAttribute('data-status') === 'acknowledged', 'the queue shows the group acknowledged');
    await row.locator('input[type=checkbox]').check();
    await analyst.fill('#incident-title', 'Rotinnlogging med passord i Bergen');
    await Promise.all([analyst.waitForURL(/\/incidents\/[0-9a-f]{32}$/),
      analyst.click('button:has-text("Opprett hendelse med valgte grupper")')]);
    const incidentUrl = analyst.url();
    await audit(analyst, 'incident');
    check((await analyst.locator('dl').textContent()).includes('4601'), 'the incident names Bergen');
    check(await analyst.locator('dd[data-tlp="AMBER"]').count() === 1, 'a new incident is TLP:AMBER');

    // A comment and a status change, each one more entry of the timeline.
    const entries = await analyst.locator('ol.timeline li').count();
    await analyst.fill('#change-comment', 'Passordet er byttet, kontoen låst.');
    await Promise.all([analyst.waitForLoadState('load'),
      analyst.locator('form', { has: analyst.locator('#change-comment') }).locator('button').click()]);
    await analyst.selectOption('#change-status', 'containment');
    await Promise.all([analyst.waitForLoadState('load'),
      analyst.locator('form', { has: analyst.locator('#change-status') }).locator('button').click()]);
    check(await analyst.locator('dd[data-status="containment"]').count() === 1, 'the status changed to containment');
    check((await analyst.locator('main').textContent()).includes('Passordet er byttet'), 'the comment is shown');
    check(await analyst.locator('ol.timeline li').count() === entries + 2, 'the timeline grew by the two changes');
    await analyst.goto(`${url}/incidents`);
    await audit(analyst, 'incidents');
    check((await analyst.locator('tbody').textContent()).includes('Rotinnlogging med passord i Bergen'), 'the incident is listed');

    // In English, on the same page, remembered by the next page.
    await Promise.all([analyst.waitForURL(`${url}/incidents`), analyst.click('[data-lang-switch]')]);
    check(await analyst.locator('html').getAttribute('lang') === 'en', 'the page says it is in English');
    check((await analyst.locator('h1').textContent()) === 'Incidents', 'the incident list is in English');
    await audit(analyst, 'incidents-en');
    await analyst.goto(`${url}/alerts`);
    check((await analyst.locator('main').textContent()).includes('Alerts – all municipalities'), 'English is remembered');
    await Promise.all([analyst.waitForURL(`${url}/alerts`), analyst.click('[data-lang-switch]')]);
    check(await analyst.locator('html').getAttribute('lang') === 'nb', 'back in Norwegian');

    // The overview: uPlot draws the charts, the tables say the same in text.
    await analyst.goto(`${url}/overview`);
    await analyst.locator('.uplot').first().waitFor({ state: 'attached', timeout: 10000 });
    check(await analyst.locator('.uplot').count() === 2, 'both charts are drawn');
    check(await analyst.locator('[data-chart-table]').count() === 2, 'each chart has its table');
    await audit(analyst, 'overview');

    // The rules the demo's pipeline loaded, and one of them with its author credited.
    await analyst.goto(`${url}/rules`);
    await audit(analyst, 'rules');
    await Promise.all([analyst.waitForURL(/\/rules\/.+/),
      analyst.click(`tbody a:has-text("${ROOT_LOGIN}")`)]);
    await audit(analyst, 'rule');
    check((await analyst.locator('.rule-credit').textContent()).includes('Detection Rule License'),
      'the rule page credits its author under the DRL');

    // The hunt form (the demo's embedded store has no SQL, which the page says).
    await analyst.goto(`${url}/hunt`);
    await audit(analyst, 'hunt');
    await analyst.fill('#hunt-rule', 'title: Root\nlogsource:\n  product: linux\n  service: sshd\n'
      + 'detection:\n  selection:\n    user: root\n  condition: selection\n');
    await Promise.all([analyst.waitForLoadState('load'), analyst.click('button[value=html]')]);
    check((await analyst.locator('[role=alert]').textContent()).includes('ClickHouse'),
      'a hunt on the embedded store says it needs ClickHouse');

    // The outbox: the demo's notifications, all sent, and one message as it went out.
    await analyst.goto(`${url}/outbox`);
    await audit(analyst, 'outbox');
    check(await analyst.locator('[data-outbox-failed="0"]').count() === 1
      && await analyst.locator('[data-state="sent"]').count() > 0,
      'the outbox shows the demo\'s notifications sent, none failed');
    await Promise.all([analyst.waitForURL(/\/outbox\/[0-9a-f]{32}$/),
      analyst.click('tbody a[href^="/outbox/"] >> nth=0')]);
    await audit(analyst, 'outbox-message');
    check((await analyst.locator('[data-message="text"]').textContent()).startsWith('TLP:'),
      'a message as sent starts with its TLP label');

    // Bergen's user: only Bergen, the incident without the CERT's comment, Bodø's alert absent.
    const bergen = await login(browser, 'bergen', process.env.BERGEN_PASSWORD);
    await audit(bergen, 'municipality-queue');
    const tenants = await bergen.locator('tbody tr').evaluateAll(rows =>
      rows.map(r => r.querySelector('td:nth-child(5)').textContent));
    check(tenants.length > 0 && tenants.every(t => t === '4601'), 'Bergen\'s queue holds Bergen\'s alerts only');
    check((await bergen.goto(`${url}/outbox`)).status() === 403, 'Bergen may not read the outbox');
    check((await bergen.goto(`${url}/collectors`)).status() === 403, 'Bergen may not read the collectors page');
    const foreign = await bergen.goto(`${url}/alerts/${bodoAlert}`);
    check(foreign.status() === 404, 'Bodø\'s alert is not found for Bergen');
    await bergen.goto(incidentUrl);
    await audit(bergen, 'municipality-incident');
    const seen = await bergen.locator('main').textContent();
    check(seen.includes('Rotinnlogging med passord i Bergen') && !seen.includes('Passordet er byttet')
      && !seen.includes('analytiker'), 'Bergen sees the incident, not the CERT\'s comment or analyst');
    check(await bergen.locator('form[action^="/incidents/"]').count() === 0, 'Bergen gets no controls');
    await Promise.all([bergen.waitForURL(`${url}/municipalities/4601`), bergen.click('text=Min kommune')]);
    await audit(bergen, 'municipality');
    check(await bergen.locator('[data-collector^="k4601-demo-01-"]').count() === 1,
      'Bergen\'s page lists its demo collector');
    await Promise.all([bergen.waitForURL(`${url}/login`), bergen.click('header button[type=submit]')]);
    check(true, 'logged out');

    // The admin: the audit log holds the analyst's acknowledgement and incident changes.
    const admin = await login(browser, 'admin', process.env.ADMIN_PASSWORD);
    await admin.goto(`${url}/audit`);
    await audit(admin, 'audit');
    const log = await admin.locator('tbody').textContent();
    check(log.includes('analytiker') && log.includes('acknowledged') && log.includes('Begrensning'),
      'the audit log shows the analyst\'s triage and incident changes');
    // The enrolled collectors: every demo municipality's, enrolled through a token, active.
    await admin.goto(`${url}/collectors`);
    await audit(admin, 'collectors');
    check(await admin.locator('td[data-state="active"]').count() >= 6,
      'the collectors page lists the demo\'s enrolled collectors as active');
    check((await admin.locator('tbody').first().textContent()).includes('k4601-demo-01-'),
      'Bergen\'s collector is on the collectors page');
    const refused = await analyst.goto(`${url}/audit`);
    check(refused.status() === 403, 'an analyst may not read the audit log');
    check(refusals.length === 0, `nothing refused by the Content-Security-Policy (${refusals.join(' | ')})`);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(summary));
})().catch(e => {
  console.error(e.message || e);
  process.exit(1);
});
