#!/usr/bin/env node
'use strict';
// The page at /_utils/ in a real browser (Chromium through playwright-core, which downloads
// nothing: the browser is the system's /usr/bin/chromium).
//
//   node web-ui.js --url http://127.0.0.1:5984 --user NAME --password PW --screenshots DIR
//                  [--chromium /usr/bin/chromium] [--timeout SEC]
//   node web-ui.js --url http://127.0.0.1:5984 --admin-party --screenshots DIR
//
// With --admin-party the server has no admin: the page must open as admin without a login
// form (as Fauxton does), and that is all this mode checks.
//
// Expects a fresh settee started with `--admin NAME:PW`. It writes its own data over HTTP
// (databases ui_*, a `_replicator` document with credentials in it, a share), then drives the
// page: login form, a wrong then a right password, live progress of a continuous replication
// while documents keep arriving, its history, a failed document's reason, the state filter,
// the share's two directions, a /_replicate job, the seed document pasted into the editor,
// inline validation errors, a replication made with the form that then runs, the database
// browser down to a conflict, no credential anywhere on screen, logout. Screenshots
// (1280x800): replications.png, new-replication.png (the guide's document pasted),
// new-replication-errors.png, document.png. On success one JSON line on stdout; on the first
// failed check `FAIL: reason` on stderr (and failure.png in DIR) and exit 1.

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const C = require('./lib/common');

const args = C.parseArgs({ url: 'string', user: 'string', password: 'string', screenshots: 'string', chromium: 'string', timeout: 'int', 'admin-party': 'bool' });
if (!args.url || !args.screenshots || (!args['admin-party'] && (!args.user || args.password === undefined))) {
  C.fail('usage: web-ui.js --url URL --user NAME --password PW --screenshots DIR [--chromium PATH] [--timeout SEC]');
}
const BASE = args.url.replace(/\/+$/, '');
const PAGE = BASE + '/_utils/';
const CHROMIUM = args.chromium || '/usr/bin/chromium';
const TIMEOUT = args.timeout || 180;
const WAIT = 20000; // per condition
const SHOTS = args.screenshots;

// Credentials written into a replication document: they must never appear on the page.
const CAROL = { name: 'carol', password: 'carol-secret-77' };
const CAROL_BASIC = Buffer.from(`${CAROL.name}:${CAROL.password}`).toString('base64');

// The sharing guide's document, exactly as the guide prints it (typo and odd selector included).
const SEED_DOC = `{
  "_id": "an_unique_id_for_your_replication",
  "source": {
    "url": "http://127.0.0.1:5984/soruce_database_name",
    "headers": {
      "Authorization": "Basic dXNlcm5hbWU6cGFzc3dvcmQ="
    }
  },
  "target": {
    "url": "https://127.0.0.1/target_database_name",
    "headers": {
      "Authorization": "Basic ZXhhbXBsZTpwYXNzd29yZA=="
    }
  },
  "continuous": true,
  "selector": {
    "type": { "$or": [{ "type": "collection" }, { "type": "item" }] }
  }
}
`;

const CheckFailed = C.AssertionError;
const check = (cond, msg) => {
  if (!cond) throw new CheckFailed(msg);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const done = [];
const passed = (name) => {
  done.push(name);
  process.stderr.write(`ok - ${name}\n`);
};

// ---- plain HTTP as the admin ---------------------------------------------------------------

const ADMIN_AUTH = 'Basic ' + Buffer.from(`${args.user}:${args.password}`).toString('base64');

async function http(method, p, body, auth = ADMIN_AUTH) {
  const headers = { Accept: 'application/json' };
  if (auth) headers.Authorization = auth;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(BASE + p, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30000),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, json, text };
}

async function must(method, p, body, ok = [200, 201, 202]) {
  const r = await http(method, p, body);
  check(ok.includes(r.status), `${method} ${p} -> ${r.status} (expected ${ok.join('/')}): ${r.text.slice(0, 300)}`);
  return r.json;
}

// Polls `fn` (Node side) until it returns something truthy.
async function until(desc, fn, ms = WAIT) {
  const end = Date.now() + ms;
  let last = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      if (e instanceof CheckFailed) throw e;
      last = e;
    }
    if (Date.now() > end) throw new CheckFailed(`timed out after ${ms} ms waiting for ${desc}${last ? ` (last error: ${last.message})` : ''}`);
    await sleep(100);
  }
}

const hex32 = (s) => crypto.createHash('md5').update(s).digest('hex');

async function setup() {
  await must('PUT', `/_users/org.couchdb.user:${CAROL.name}`, { name: CAROL.name, password: CAROL.password, roles: [], type: 'user' });
  for (const db of ['ui_src', 'ui_form_src', 'ui_notes', 'ui_notes_remote']) await must('PUT', `/${db}`);
  await must('PUT', '/ui_src/_security', { members: { names: [CAROL.name], roles: [] } });
  const docs = [];
  for (let i = 0; i < 5; i++) docs.push({ _id: `start-${i}`, type: 'item', n: i });
  await must('POST', '/ui_src/_bulk_docs', { docs });
  // A document with two live leaves: a conflict to look at.
  await must('POST', '/ui_src/_bulk_docs', {
    new_edits: false,
    docs: [
      { _id: 'conflicted', _rev: `1-${hex32('a')}`, colour: 'red', note: 'edited on the laptop' },
      { _id: 'conflicted', _rev: `1-${hex32('b')}`, colour: 'blue', note: 'edited on the server' },
    ],
  });
  await must('POST', '/ui_form_src/_bulk_docs', {
    docs: [
      { _id: 'item-1', type: 'item' },
      { _id: 'item-2', type: 'item' },
      { _id: 'other-1', type: 'other' },
    ],
  });
  await must('POST', '/ui_notes/_bulk_docs', { docs: [{ _id: 'note-1', type: 'note' }, { _id: 'note-2', type: 'note' }] });
  // A continuous replication whose source carries credentials, in the sharing guide's shape.
  await must('PUT', '/_replicator/ui-live', {
    source: { url: `${BASE}/ui_src`, headers: { Authorization: `Basic ${CAROL_BASIC}` } },
    target: 'ui_dst',
    create_target: true,
    continuous: true,
  });
  // A one-shot replication from a database that does not exist, with no retry: it fails.
  await must('PUT', '/_replicator/ui-broken', { source: 'ui_nosuch', target: 'ui_never', retry: { count: 0, interval: '1s' } });
  // A continuous /_replicate job: no document behind it.
  await must('POST', '/_replicate', { source: 'ui_notes', target: 'ui_notes_copy', create_target: true, continuous: true });
  // A share: two replications, one per direction.
  await must('POST', '/_sharing', {
    id: 'ui-notes',
    local: 'ui_notes',
    remote: { url: `${BASE}/ui_notes_remote`, auth: { basic: { username: args.user, password: args.password } } },
    selector: { type: 'note' },
    mode: 'read-write',
  });
}

async function schedulerDoc(id) {
  const r = await http('GET', `/_scheduler/docs/_replicator/${encodeURIComponent(id)}`);
  return r.status === 200 ? r.json : null;
}

// ---- the browser ---------------------------------------------------------------------------

let page = null;

async function waitPage(desc, fn, arg, ms = WAIT) {
  try {
    return await page.waitForFunction(fn, arg, { timeout: ms, polling: 100 });
  } catch (e) {
    throw new CheckFailed(`timed out after ${ms} ms waiting on the page for ${desc}`);
  }
}

async function visible(sel, desc, ms = WAIT) {
  try {
    await page.locator(sel).first().waitFor({ state: 'visible', timeout: ms });
  } catch (e) {
    throw new CheckFailed(`timed out after ${ms} ms waiting for ${desc} (${sel}) to be visible`);
  }
}

const hiddenNow = async (sel) => !(await page.locator(sel).first().isVisible());

async function shot(name) {
  await page.screenshot({ path: path.join(SHOTS, name) });
}

// The docs-written number the page shows for a replication document (NaN if none).
const writtenOnPage = (docId) =>
  page.evaluate((id) => {
    const cell = document.querySelector(`tr[data-doc-id="${id}"] [data-field="docs_written"]`);
    return cell ? Number(cell.textContent.trim() || NaN) : NaN;
  }, docId);
const pollsOnPage = () => page.evaluate(() => Number(document.querySelector('#replications').dataset.polls));

async function noSecretsOnPage(where) {
  const html = await page.content();
  for (const s of [CAROL.password, CAROL_BASIC]) check(!html.includes(s), `${where}: the page shows a credential (${s.slice(0, 4)}…)`);
}

async function setJson(text) {
  const ed = page.locator('#json-editor');
  await ed.click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  // insertText types the text in one input event, as a paste does.
  if (text) await page.keyboard.insertText(text);
}

async function validationSays(state, desc) {
  await waitPage(desc, (s) => document.querySelector('#validation').dataset.state === s, state);
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  check(fs.existsSync(CHROMIUM), `no browser at ${CHROMIUM}`);
  const t0 = Date.now();
  const adminParty = Boolean(args['admin-party']);
  if (!adminParty) await setup();

  const { chromium } = require('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  try {
    await (adminParty ? runAdminParty() : run(t0));
    check(pageErrors.length === 0, `JavaScript errors on the page: ${pageErrors.join(' | ')}`);
  } catch (e) {
    try {
      await shot('failure.png');
    } catch {
      // the page may be gone
    }
    throw e;
  } finally {
    await browser.close();
  }
  const secs = (Date.now() - t0) / 1000;
  C.printResult({ ok: true, checks: done, seconds: Math.round(secs * 10) / 10 });
}

async function runAdminParty() {
  await page.goto(PAGE);
  await visible('#replication-view', 'the replications, with no login in admin party');
  check(await hiddenNow('#login-form'), 'a login form in admin party');
  const who = (await page.locator('#user-name').textContent()).trim();
  check(who === 'admin party', `the page says the user is ${JSON.stringify(who)}, not "admin party"`);
  passed('admin party opens without a login');
}

async function run() {
  // 1. The page loads and, with an admin configured and no session, asks to log in.
  await page.goto(PAGE);
  await visible('#login-form', 'the login form');
  check(await hiddenNow('#replication-view'), 'the replications are shown before logging in');
  passed('login form shown');

  // 2. A wrong password: the server's reason is shown, and we stay on the form.
  const wrong = await http('POST', '/_session', { name: args.user, password: `${args.password}-wrong` }, null);
  check(wrong.status === 401 && wrong.json && wrong.json.reason, `a wrong password should answer 401 with a reason: ${wrong.text}`);
  await page.fill('#login-name', args.user);
  await page.fill('#login-password', `${args.password}-wrong`);
  await page.click('#login-submit');
  await waitPage('the login error', (r) => {
    const e = document.querySelector('#login-error');
    return !e.hidden && e.textContent.includes(r);
  }, wrong.json.reason);
  check(await hiddenNow('#replication-view'), 'a wrong password let the page in');
  passed('wrong password refused with the server\'s reason');

  // 3. The right one: in, as that user.
  await page.fill('#login-password', args.password);
  await page.click('#login-submit');
  await visible('#replication-view', 'the replications after logging in');
  const who = (await page.textContent('#user-name')).trim();
  check(who === args.user, `the page says it is logged in as ${JSON.stringify(who)}`);
  const cookies = await page.context().cookies();
  check(cookies.some((c) => c.name === 'AuthSession'), 'no AuthSession cookie after logging in');
  passed('login');

  // 4. Live progress: documents keep arriving in the source of a continuous replication, and
  //    the page's docs-written number for it grows across polls, without a reload.
  await page.evaluate(() => { window.__sameDocument = 'still here'; });
  await waitPage('ui-live running with a docs-written number', () => {
    const row = document.querySelector('tr[data-doc-id="ui-live"]');
    const n = row && Number(row.querySelector('[data-field="docs_written"]').textContent.trim() || NaN);
    return row && row.dataset.state === 'running' && n >= 6; // 5 docs and the conflict
  });
  const seen = [await writtenOnPage('ui-live')];
  let batch = 0;
  for (let round = 0; round < 3; round++) {
    const before = seen[seen.length - 1];
    const polls = await pollsOnPage();
    const docs = [];
    for (let i = 0; i < 5; i++) docs.push({ _id: `live-${round}-${i}`, type: 'item', round });
    await must('POST', '/ui_src/_bulk_docs', { docs });
    batch += docs.length;
    await waitPage(`the docs-written of ui-live to pass ${before} (round ${round})`, ([b, p]) => {
      const cell = document.querySelector('tr[data-doc-id="ui-live"] [data-field="docs_written"]');
      return cell && Number(cell.textContent) > b && Number(document.querySelector('#replications').dataset.polls) > p;
    }, [before, polls]);
    seen.push(await writtenOnPage('ui-live'));
  }
  check(seen[seen.length - 1] >= seen[0] + batch, `docs written went ${seen.join(' → ')} for ${batch} new documents`);
  const sameDoc = await page.evaluate(() => window.__sameDocument);
  check(sameDoc === 'still here', 'the page reloaded while polling');
  await waitPage('a docs/s rate above zero and a drawn throughput line', () => {
    const row = document.querySelector('tr[data-doc-id="ui-live"]');
    return row && Number(row.querySelector('[data-field="rate"]').textContent) > 0
      && row.querySelector('svg[data-testid="throughput-chart"] polyline');
  });
  const pending = await page.textContent('tr[data-doc-id="ui-live"] [data-field="changes_pending"]');
  check(/^\d+$/.test(pending.trim()), `changes pending shows ${JSON.stringify(pending)}`);
  passed(`live progress (${seen.join(' → ')})`);

  // 5. History of state changes, from the job in _scheduler/jobs.
  await page.click('tr[data-doc-id="ui-live"] details[data-testid="history"] summary');
  const hist = await page.textContent('tr[data-doc-id="ui-live"] details[data-testid="history"]');
  check(/started/.test(hist) && /added/.test(hist), `history shows ${JSON.stringify(hist)}`);
  // It stays open across the next poll's redraw.
  const p0 = await pollsOnPage();
  await waitPage('one more poll', (p) => Number(document.querySelector('#replications').dataset.polls) > p, p0);
  check(await page.evaluate(() => document.querySelector('tr[data-doc-id="ui-live"] details').open), 'history closed itself on a redraw');
  passed('history');

  // 6. A failed replication document shows its reason, the same as _scheduler/docs says.
  const failed = await until('ui-broken to fail', async () => {
    const d = await schedulerDoc('ui-broken');
    return d && d.state === 'failed' && d.info && d.info.error ? d : null;
  });
  const reason = failed.info.error;
  await waitPage(`the reason ${JSON.stringify(reason)} on ui-broken's row`, (r) => {
    const row = document.querySelector('tr[data-doc-id="ui-broken"]');
    const cell = row && row.querySelector('[data-field="reason"]');
    return row && row.dataset.state === 'failed' && cell && cell.textContent.trim() === r;
  }, reason);
  passed(`failed reason shown (${reason})`);

  // 7. The state filter: only failed rows, then all again.
  await page.selectOption('#state-filter', 'failed');
  await waitPage('only failed rows', () => {
    const rows = [...document.querySelectorAll('tr[data-testid="repl-row"]')];
    return rows.length > 0 && rows.every((r) => r.dataset.state === 'failed')
      && rows.some((r) => r.dataset.docId === 'ui-broken');
  });
  await page.selectOption('#state-filter', 'all');
  await waitPage('ui-live back in the list', () => Boolean(document.querySelector('tr[data-doc-id="ui-live"]')));
  passed('state filter');

  // 8. The share, with both directions.
  await waitPage('the share ui-notes with its push and pull', () => {
    const s = document.querySelector('[data-share-id="ui-notes"]');
    return s && s.querySelector('[data-direction="push"]') && s.querySelector('[data-direction="pull"]');
  });
  passed('share with both directions');

  // 9. The /_replicate job, which has no document, is listed too.
  await waitPage('the /_replicate job ui_notes → ui_notes_copy', () => [...document.querySelectorAll('tr[data-kind="job"]')]
    .some((r) => r.querySelector('[data-field="target"]').textContent.includes('ui_notes_copy')));
  passed('/_replicate job listed');

  await noSecretsOnPage('replications');
  const sourceShown = await page.textContent('tr[data-doc-id="ui-live"] [data-field="source"]');
  check(sourceShown.includes('/ui_src'), `ui-live's source shows ${JSON.stringify(sourceShown)}`);
  await shot('replications.png');
  passed('no credentials on the replications page; screenshot');

  // 10. The sharing guide's link lands on the editor, and its document works as pasted.
  await page.goto(`${PAGE}#database/_replicator/_new`);
  await visible('#editor-view', 'the editor at #database/_replicator/_new');
  check(await hiddenNow('#replication-view'), 'the replications list is shown at #database/_replicator/_new');
  await setJson(SEED_DOC);
  await validationSays('ok', 'the seed document to validate');
  const form = await page.evaluate(() => ({
    id: document.querySelector('#f-id').value,
    source: document.querySelector('#f-source').value,
    sourceNote: document.querySelector('#f-source-note').textContent,
    target: document.querySelector('#f-target').value,
    continuous: document.querySelector('#f-continuous').checked,
    selector: document.querySelector('#f-selector').value,
  }));
  check(form.id === 'an_unique_id_for_your_replication', `form id: ${form.id}`);
  check(form.source === 'http://127.0.0.1:5984/soruce_database_name', `form source: ${form.source}`);
  check(form.sourceNote.includes('Authorization') && !form.sourceNote.includes('dXNlcm5hbWU6'), `source note: ${form.sourceNote}`);
  check(form.target === 'https://127.0.0.1/target_database_name', `form target: ${form.target}`);
  check(form.continuous === true, 'continuous is not checked for the seed');
  check(JSON.stringify(JSON.parse(form.selector)) === JSON.stringify(JSON.parse(SEED_DOC).selector), `form selector: ${form.selector}`);
  const warnings = await page.$$eval('[data-testid="validation-warning"]', (ls) => ls.map((l) => l.textContent));
  check(warnings.some((w) => w.includes('type.type')), `the seed's selector warning is missing: ${JSON.stringify(warnings)}`);
  check(!(await page.isDisabled('#save-btn')), 'Save is disabled for a valid document');
  await page.evaluate(() => { document.querySelector('#json-editor').scrollTop = 0; });
  await shot('new-replication.png');
  passed('seed document pasted: form filled, valid with its warning; screenshot');

  // 11. Inline validation errors before saving: a misspelt option, then a bad selector.
  await setJson(`{
  "_id": "ui-typo",
  "source": "ui_form_src",
  "target": "ui_typo_dst",
  "continous": true,
  "selector": {"type": {"$or": [{"type": "item"}, {"type": "other"}]}}
}`);
  await validationSays('errors', 'an error for `continous`');
  const errors = await page.$$eval('[data-testid="validation-error"]', (ls) => ls.map((l) => l.textContent));
  check(errors.some((e) => e.includes('continous') && e.includes('did you mean `continuous`')), `errors shown: ${JSON.stringify(errors)}`);
  check(await page.isDisabled('#save-btn'), 'Save is enabled for a document with errors');
  await shot('new-replication-errors.png');
  await page.click('#save-btn', { force: true }); // a disabled button: nothing may happen
  await page.fill('#f-selector', '{"type": {"$bad": 1}}');
  await validationSays('errors', 'an error for the selector');
  const selErrors = await page.$$eval('[data-testid="validation-error"]', (ls) => ls.map((l) => l.textContent));
  check(selErrors.some((e) => e.includes('$bad')), `selector errors shown: ${JSON.stringify(selErrors)}`);
  const jsonNow = JSON.parse(await page.inputValue('#json-editor'));
  check(jsonNow.selector && jsonNow.selector.type && jsonNow.selector.type.$bad === 1, `the JSON did not follow the form: ${JSON.stringify(jsonNow)}`);
  passed('validation errors inline, Save disabled; screenshot');

  // 12. A replication made with the form runs.
  await page.goto(`${PAGE}#/replication/_create`);
  await visible('#editor-view', 'the editor at #/replication/_create');
  await setJson('');
  await page.fill('#f-id', 'ui-from-form');
  await page.fill('#f-source', 'ui_form_src');
  await page.fill('#f-target', 'ui_form_dst');
  await page.check('#f-create-target');
  await page.fill('#f-selector', '{"type": "item"}');
  await validationSays('ok', 'the form\'s document to validate');
  const built = JSON.parse(await page.inputValue('#json-editor'));
  const want = { _id: 'ui-from-form', source: 'ui_form_src', target: 'ui_form_dst', create_target: true, selector: { type: 'item' } };
  check(JSON.stringify(built) === JSON.stringify(want), `the JSON built from the form: ${JSON.stringify(built)}`);
  await page.click('#preview-btn');
  await waitPage('the preview', () => ['ok', 'error'].includes(document.querySelector('#preview-result').dataset.state));
  const previewIds = await page.$$eval('[data-testid="preview-doc"]', (ls) => ls.map((l) => l.dataset.id).sort());
  check(JSON.stringify(previewIds) === '["item-1","item-2"]', `the preview lists ${JSON.stringify(previewIds)} (error: ${await page.textContent('#preview-result')})`);
  await page.click('#save-btn');
  await waitPage('the replications list after saving', () => location.hash === '#/replication'
    && !document.querySelector('#replication-view').hidden);
  await waitPage('ui-from-form in the list', () => Boolean(document.querySelector('tr[data-doc-id="ui-from-form"]')));
  const fromForm = await until('ui-from-form to complete', async () => {
    const d = await schedulerDoc('ui-from-form');
    return d && d.state === 'completed' ? d : null;
  });
  const all = await must('GET', '/ui_form_dst/_all_docs');
  const ids = all.rows.map((r) => r.id).sort();
  check(JSON.stringify(ids) === '["item-1","item-2"]', `ui_form_dst holds ${JSON.stringify(ids)} after completing (${JSON.stringify(fromForm.info)})`);
  await waitPage('ui-from-form shown completed', () => {
    const row = document.querySelector('tr[data-doc-id="ui-from-form"]');
    return row && row.dataset.state === 'completed';
  });
  // The earlier document with errors was never saved (checked after a save that did happen).
  const typo = await http('GET', '/_replicator/ui-typo');
  check(typo.status === 404, `the document with errors was saved: ${typo.status} ${typo.text}`);
  passed('replication created from the form ran; preview listed what it sent');

  // 13. #/replication lands on the list.
  await page.goto(`${PAGE}#/replication`);
  await visible('#replication-view', 'the list at #/replication');
  check(await hiddenNow('#editor-view'), 'the editor is shown at #/replication');
  passed('#/replication lands on the list');

  // 14. Databases: counts, documents, one document and its conflict.
  await page.goto(`${PAGE}#/_all_dbs`);
  const info = (await must('POST', '/_dbs_info', { keys: ['ui_src'] }))[0].info;
  await waitPage(`ui_src with ${info.doc_count} documents`, (n) => {
    const cell = document.querySelector('tr[data-db="ui_src"] [data-field="doc_count"]');
    return cell && Number(cell.textContent) === n;
  }, info.doc_count);
  await page.click('tr[data-db="ui_src"] a');
  await waitPage('the document list of ui_src', () => location.hash === '#database/ui_src/_all_docs'
    && document.querySelector('tr[data-testid="doc-row"][data-id="conflicted"]')
    && document.querySelector('tr[data-testid="conflict-row"][data-id="conflicted"]'));
  const shownRows = await page.$$eval('tr[data-testid="doc-row"]', (ls) => ls.length);
  check(shownRows === Math.min(50, info.doc_count), `the list shows ${shownRows} rows of ${info.doc_count}`);
  await page.click('tr[data-testid="doc-row"][data-id="conflicted"] a');
  const doc = await must('GET', '/ui_src/conflicted?conflicts=true');
  check(doc._conflicts && doc._conflicts.length === 1, `conflicted has no conflict: ${JSON.stringify(doc)}`);
  await waitPage('the document and its conflict', ([rev, loser]) => location.hash === '#database/ui_src/conflicted'
    && document.querySelector('#doc-json').textContent.includes(rev)
    && document.querySelector(`[data-testid="conflict-rev"][data-rev="${loser}"]`), [doc._rev, doc._conflicts[0]]);
  await page.click(`[data-testid="conflict-rev"][data-rev="${doc._conflicts[0]}"]`);
  const loser = await must('GET', `/ui_src/conflicted?rev=${doc._conflicts[0]}`);
  await waitPage('the losing revision\'s body', (colour) => document.querySelector('#conflict-json').textContent.includes(colour), loser.colour);
  await shot('document.png');
  passed('databases, documents, a document with its conflict; screenshot');

  // 15. A raw replication document: its credentials are masked.
  await page.goto(`${PAGE}#database/_replicator/ui-live`);
  await waitPage('the raw ui-live document', () => document.querySelector('#doc-json').textContent.includes('ui_src'));
  const raw = await page.textContent('#doc-json');
  check(raw.includes('*****'), `the raw document shows no mask: ${raw}`);
  await noSecretsOnPage('the raw _replicator document');
  passed('raw replication document masked');

  // 16. Log out: back to the form, and still there after a reload.
  await page.click('#logout');
  await visible('#login-form', 'the login form after logging out');
  await page.reload();
  await visible('#login-form', 'the login form after logging out and reloading');
  check(await hiddenNow('#replication-view'), 'the replications are shown after logging out');
  passed('logout');
}

C.runMain(main, TIMEOUT);
