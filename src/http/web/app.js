// settee's page at /_utils/: replications, a replication editor and a database browser, in
// plain JavaScript over the public HTTP API (no framework, no build step). Every request goes
// to the server that served the page, with its session cookie.
'use strict';

// ---------------------------------------------------------------------------------------------
// Small helpers

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) =>
    ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

const pretty = (v) => JSON.stringify(v, null, 2);
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const enc = encodeURIComponent;

// The API root: the page lives at <root>/_utils/, so relative URLs survive a path prefix.
const ROOT = new URL('../', location.href);

class ApiError extends Error {
  constructor(status, error, reason) {
    super(reason || error || `HTTP ${status}`);
    this.status = status;
    this.error = error;
  }
}

// An error for the screen: the server's reason, and its error tag when that adds something.
function explain(e) {
  return e.error && e.error !== e.message ? `${e.message} (${e.error})` : e.message;
}

async function api(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(new URL(path, ROOT), opts);
  } catch (e) {
    throw new ApiError(0, 'unreachable', `the server did not answer (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data && data.error, data && data.reason);
    if (res.status === 401 && state.user && path !== '_session') sessionEnded();
    throw err;
  }
  return data;
}

// Credentials never reach the screen: `user:pass@` in URLs, and values under keys that hold
// secrets (`password`, `Authorization` headers, …) anywhere in a raw document.
const SECRET_KEY = /^(password|authorization|proxy-authorization|cookie|token|secret|api[-_]?key)$/i;

function redactUrl(s) {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)@/i.exec(s);
  if (!m) return s;
  const colon = m[2].indexOf(':');
  const user = colon < 0 ? m[2] : m[2].slice(0, colon) + ':*****';
  return m[1] + user + '@' + s.slice(m[0].length);
}

function redact(v, key) {
  if (typeof v === 'string') return key && SECRET_KEY.test(key) ? '*****' : redactUrl(v);
  if (Array.isArray(v)) return v.map((x) => redact(x));
  if (isObject(v)) {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = redact(x, k);
    return out;
  }
  return v;
}

function endpointText(e) {
  if (e == null) return '';
  if (typeof e === 'string') return redactUrl(e);
  if (isObject(e) && typeof e.url === 'string') return redactUrl(e.url);
  return JSON.stringify(redact(e));
}

// JSON with a little colour; input is redacted by the caller where needed.
function highlight(v) {
  return esc(pretty(v)).replace(
    /(&quot;(?:[^&\\]|\\.|&(?!quot;))*&quot;)(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g,
    (m, str, colon, lit, num) => {
      if (str) return colon ? `<span class="k">${str}</span>${colon}` : `<span class="s">${str}</span>`;
      if (lit) return `<span class="l">${lit}</span>`;
      return `<span class="n">${num}</span>`;
    });
}

function banner(msg, kind = 'error') {
  const b = $('#banner');
  b.textContent = msg;
  b.dataset.kind = kind;
  b.hidden = false;
  clearTimeout(banner.timer);
  if (kind === 'info') banner.timer = setTimeout(() => { b.hidden = true; }, 6000);
}

function clearBanner() {
  clearTimeout(banner.timer);
  $('#banner').hidden = true;
}

const pad2 = (n) => String(n).padStart(2, '0');

// "17:08:59" today, "2026-12-03 17:08" before.
function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  const time = `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  if (d.toDateString() === new Date().toDateString()) return `${time}:${pad2(d.getSeconds())}`;
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${time}`;
}

// ---------------------------------------------------------------------------------------------
// Session

// `flash`: a message for the next page shown (after a save).
const state = { user: null, view: null, flash: null };

const isAdmin = (ctx) => Boolean(ctx && Array.isArray(ctx.roles) && ctx.roles.includes('_admin'));

async function boot() {
  window.addEventListener('hashchange', route);
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', logout);
  initReplications();
  initEditor();
  initDatabases();
  try {
    const s = await api('GET', '_session');
    if (isAdmin(s.userCtx)) enter(s.userCtx);
    else showLogin(s.userCtx && s.userCtx.name ? `${s.userCtx.name} is not a server admin: log in as one.` : null);
  } catch (e) {
    $('#loading').hidden = true;
    banner(`Could not reach the server: ${e.message}`);
  }
}

function showLogin(message) {
  state.user = null;
  stopPolling();
  $('#nav').hidden = true;
  $('#session').hidden = true;
  showView('login');
  const err = $('#login-error');
  err.textContent = message || '';
  err.hidden = !message;
  $('#login-name').focus();
}

function sessionEnded() {
  showLogin('Your session has ended: log in again.');
}

async function login(ev) {
  ev.preventDefault();
  const err = $('#login-error');
  err.hidden = true;
  const button = $('#login-submit');
  button.disabled = true;
  try {
    await api('POST', '_session', { name: $('#login-name').value, password: $('#login-password').value });
    const s = await api('GET', '_session');
    if (!isAdmin(s.userCtx)) {
      throw new ApiError(403, 'forbidden', `${s.userCtx.name} is not a server admin: this page needs one.`);
    }
    $('#login-password').value = '';
    enter(s.userCtx);
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try {
    await api('DELETE', '_session');
  } catch (e) {
    banner(`Log out failed: ${e.message}`);
    return;
  }
  showLogin('Logged out.');
}

function enter(ctx) {
  state.user = ctx;
  $('#nav').hidden = false;
  $('#session').hidden = false;
  // In admin party there is no session to end.
  $('#user-name').textContent = ctx.name || 'admin party';
  $('#logout').hidden = !ctx.name;
  route();
}

// ---------------------------------------------------------------------------------------------
// Routing: CouchDB Fauxton's hash forms (`#/replication`, `#database/_replicator/_new`,
// `#database/{db}/_all_docs`, `#database/{db}/{docid}`) and `#/_all_dbs`.

function parseHash() {
  let h = location.hash.replace(/^#\/?/, '');
  let query = new URLSearchParams();
  const q = h.indexOf('?');
  if (q >= 0) {
    query = new URLSearchParams(h.slice(q + 1));
    h = h.slice(0, q);
  }
  const segs = h.split('/');
  const dec = (s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  if (h === '' || h === 'replication' || h === '_replication') return { view: 'replication' };
  if (h === 'replication/_create' || h === 'database/_replicator/_new') return { view: 'editor' };
  if (h === '_all_dbs' || h === 'database' || h === 'databases') return { view: 'databases' };
  if (segs[0] === 'database' && segs.length >= 2) {
    const db = dec(segs[1]);
    const rest = segs.slice(2).map(dec).join('/');
    if (rest === '' || rest === '_all_docs') {
      return { view: 'docs', db, skip: Math.max(0, parseInt(query.get('skip') || '0', 10) || 0) };
    }
    return { view: 'doc', db, id: rest };
  }
  return { view: 'unknown', hash: h };
}

function showView(name) {
  state.view = name;
  document.body.dataset.view = name;
  $('#loading').hidden = true;
  for (const v of $$('.view')) v.hidden = v.id !== `${name}-view`;
  const nav = { replication: 'replication', editor: 'editor', databases: 'databases', docs: 'databases', doc: 'databases' }[name];
  for (const a of $$('#nav a')) a.classList.toggle('active', a.dataset.nav === nav);
}

function route() {
  if (!state.user) return;
  clearBanner();
  if (state.flash) {
    banner(state.flash, 'info');
    state.flash = null;
  }
  const r = parseHash();
  if (r.view !== 'replication') stopPolling();
  switch (r.view) {
    case 'replication':
      showView('replication');
      startPolling();
      break;
    case 'editor':
      showView('editor');
      openEditor();
      break;
    case 'databases':
      showView('databases');
      loadDatabases();
      break;
    case 'docs':
      showView('docs');
      loadDocs(r.db, r.skip);
      break;
    case 'doc':
      showView('doc');
      loadDoc(r.db, r.id);
      break;
    default:
      showView('replication');
      startPolling();
      banner(`Unknown page #${r.hash}: showing the replications.`);
  }
}

// ---------------------------------------------------------------------------------------------
// Replications: _scheduler/docs + _scheduler/jobs (+ _sharing), polled every second.

const POLL_MS = 1000;
const WINDOW_MS = 60000;
const repl = {
  timer: null,
  running: false,
  loop: 0, // one polling loop at a time: an answer for an older loop is dropped
  polls: 0,
  samples: new Map(), // row key -> [{t, w}] docs_written over the last minute
  open: new Set(), // row keys whose history is expanded
  filter: 'all',
  shares: null,
  sharesError: null,
  sharesAt: 0,
};

function initReplications() {
  $('#state-filter').addEventListener('change', (e) => {
    repl.filter = e.target.value;
    if (repl.last) renderReplications(repl.last);
  });
  // <details> toggles do not bubble: listen while capturing to remember what is open.
  $('#replication-rows').addEventListener('toggle', (e) => {
    const key = e.target.dataset.key;
    if (!key) return;
    if (e.target.open) repl.open.add(key);
    else repl.open.delete(key);
  }, true);
}

function startPolling() {
  if (repl.running) return;
  repl.running = true;
  repl.loop += 1;
  poll(repl.loop);
}

function stopPolling() {
  repl.running = false;
  clearTimeout(repl.timer);
}

async function poll(loop) {
  const current = () => repl.running && loop === repl.loop;
  if (!current()) return;
  const status = $('#poll-status');
  try {
    const now = Date.now();
    // Shares are re-read every few seconds (the listing scans the local database); their
    // directions' states come from _scheduler/docs every second.
    const wantShares = now - repl.sharesAt > 5000;
    const [docs, jobs, shares] = await Promise.all([
      api('GET', '_scheduler/docs'),
      api('GET', '_scheduler/jobs'),
      wantShares ? api('GET', '_sharing').catch((e) => ({ failed: e })) : Promise.resolve(null),
    ]);
    if (shares) {
      repl.sharesAt = now;
      repl.shares = shares.failed ? null : shares.shares || [];
      repl.sharesError = shares.failed ? shares.failed.message : null;
    }
    if (!current()) return;
    repl.polls += 1;
    const data = { docs: docs.docs || [], jobs: jobs.jobs || [], at: Date.now() };
    repl.last = data;
    renderReplications(data);
    $('#replications').dataset.polls = String(repl.polls);
    status.textContent = `Live · updated ${new Date(data.at).toLocaleTimeString()}`;
    status.classList.remove('error-text');
  } catch (e) {
    if (!current()) return;
    status.textContent = `Update failed: ${explain(e)}`;
    status.classList.add('error-text');
  }
  if (current()) repl.timer = setTimeout(() => poll(loop), POLL_MS);
}

// Rows: every _replicator document, then every /_replicate job (doc_id null).
function rowsOf(data) {
  const jobs = new Map(data.jobs.map((j) => [j.id, j]));
  const rows = [];
  for (const d of data.docs) {
    const job = d.id ? jobs.get(d.id) : null;
    rows.push({
      key: `doc:${d.doc_id}`,
      kind: 'doc',
      name: d.doc_id,
      jobId: d.id,
      source: d.source,
      target: d.target,
      state: d.state || 'initializing',
      info: d.info || {},
      history: job ? job.history || [] : [],
      errorCount: d.error_count || 0,
      updated: d.last_updated,
    });
  }
  for (const j of data.jobs.filter((j) => j.doc_id == null)) {
    rows.push({
      key: `job:${j.id}`,
      kind: 'job',
      name: j.id,
      jobId: j.id,
      source: j.source,
      target: j.target,
      state: j.state || 'initializing',
      info: j.info || {},
      history: j.history || [],
      errorCount: 0,
      updated: j.start_time,
    });
  }
  for (const r of rows) {
    r.reason = (r.info && (r.info.error || r.info.reason)) || null;
    if (!r.reason && (r.state === 'crashing' || r.state === 'pending' || r.state === 'error')) {
      const last = r.history.find((h) => h.reason);
      if (last) r.reason = last.reason;
    }
  }
  return rows;
}

function sample(row, now) {
  const w = Number(row.info && row.info.docs_written);
  let s = repl.samples.get(row.key);
  if (!Number.isFinite(w)) return s || [];
  if (!s || (s.length && w < s[s.length - 1].w)) s = []; // a restarted job starts from 0
  s.push({ t: now, w });
  while (s.length > 2 && s[1].t < now - WINDOW_MS) s.shift();
  repl.samples.set(row.key, s);
  return s;
}

// Documents written per second over the samples of the last minute.
function rateOf(s) {
  if (s.length < 2) return null;
  const a = s[0];
  const b = s[s.length - 1];
  const dt = (b.t - a.t) / 1000;
  return dt > 0 ? (b.w - a.w) / dt : null;
}

function sparkline(s, now) {
  const W = 120;
  const H = 28;
  const pts = [];
  for (let i = 1; i < s.length; i++) {
    const dt = (s[i].t - s[i - 1].t) / 1000;
    if (dt <= 0) continue;
    pts.push({ t: s[i].t, r: Math.max(0, (s[i].w - s[i - 1].w) / dt) });
  }
  const max = Math.max(1, ...pts.map((p) => p.r));
  // The last minute, or less while there is less history (at least 10 s wide).
  const span = Math.min(WINDOW_MS, Math.max(10000, s.length ? now - s[0].t : 0));
  const x = (t) => Math.max(0, W - ((now - t) / span) * W).toFixed(1);
  const y = (r) => (H - 2 - (r / max) * (H - 4)).toFixed(1);
  let body = `<line x1="0" y1="${H - 1}" x2="${W}" y2="${H - 1}" class="axis"/>`;
  if (pts.length) {
    const line = pts.map((p) => `${x(p.t)},${y(p.r)}`).join(' ');
    const area = `${x(pts[0].t)},${H - 1} ${line} ${x(pts[pts.length - 1].t)},${H - 1}`;
    body += `<polygon points="${area}" class="area"/><polyline points="${line}" class="line"/>`;
  }
  const peak = pts.length ? Math.max(...pts.map((p) => p.r)).toFixed(1) : '0';
  return `<svg class="spark" data-testid="throughput-chart" data-points="${pts.length}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="documents written per second, last minute"><title>docs/s over the last ${Math.round(span / 1000)} s (peak ${peak})</title>${body}</svg>`;
}

function num(v) {
  return v == null || v === '' ? '' : esc(v);
}

function rowHtml(r, now) {
  const s = sample(r, now);
  const rate = rateOf(s);
  const info = r.info || {};
  const hist = r.history
    .map((h) => `<li><time>${esc(fmtTime(h.timestamp))}</time> <b>${esc(h.type)}</b>${h.reason ? ` — ${esc(h.reason)}` : ''}</li>`)
    .join('');
  const share = shareOfDoc(r.name);
  const badge = r.kind === 'job'
    ? '<span class="tag">/_replicate</span>'
    : share ? `<span class="tag" title="replication of share ${esc(share)}">share ${esc(share)}</span>` : '';
  // A job's id is long: its hash, shortened, then its options (`+continuous`, …).
  const [hash, ...opts] = (r.jobId || '').split('+');
  const jobLine = r.jobId ? `<div class="sub" title="${esc(r.jobId)}">${r.kind === 'doc' ? 'job ' : ''}${esc(hash.slice(0, 12))}…${opts.length ? ` +${esc(opts.join(' +'))}` : ''}</div>` : '';
  return `<tr data-testid="repl-row" data-key="${esc(r.key)}" data-kind="${r.kind}" ${r.kind === 'doc' ? `data-doc-id="${esc(r.name)}"` : ''} data-job-id="${esc(r.jobId || '')}" data-state="${esc(r.state)}">
    <td class="name">${r.kind === 'doc' ? `<div class="rid" data-field="name">${esc(r.name)}</div>` : ''}<div class="line">${badge}${jobLine}</div>
      ${r.history.length ? `<details data-key="${esc(r.key)}" data-testid="history"${repl.open.has(r.key) ? ' open' : ''}><summary>history (${r.history.length})</summary><ol>${hist}</ol></details>` : ''}
    </td>
    <td class="ends"><div data-field="source">${esc(endpointText(r.source))}</div><div data-field="target"><span class="arrow">→</span> ${esc(endpointText(r.target))}</div></td>
    <td class="state"><span class="pill state-${esc(r.state)}" data-field="state">${esc(r.state)}</span>
      ${r.errorCount ? `<span class="muted" title="errors in a row"> ×${esc(r.errorCount)}</span>` : ''}
      ${r.reason ? `<div class="reason" data-field="reason">${esc(r.reason)}</div>` : ''}</td>
    <td class="num" data-field="changes_pending">${num(info.changes_pending)}</td>
    <td class="num" data-field="docs_written">${num(info.docs_written)}</td>
    <td class="num" data-field="rate">${rate == null ? '' : rate.toFixed(1)}</td>
    <td>${sparkline(s, now)}</td>
    <td class="seq" data-field="checkpoint" title="${esc(info.checkpointed_source_seq ?? '')}">${esc(info.checkpointed_source_seq ?? '')}</td>
  </tr>`;
}

function shareOfDoc(docId) {
  for (const sh of repl.shares || []) {
    if ((sh.directions || []).some((d) => d.doc_id === docId)) return sh.id;
  }
  return null;
}

function renderReplications(data) {
  const now = Date.now();
  // What is open now, even if its toggle event has not been delivered yet.
  for (const d of $$('#replication-rows details[data-key]')) {
    if (d.open) repl.open.add(d.dataset.key);
    else repl.open.delete(d.dataset.key);
  }
  const rows = rowsOf(data);
  const counts = {};
  for (const r of rows) counts[r.state] = (counts[r.state] || 0) + 1;
  for (const o of $('#state-filter').options) {
    o.textContent = o.value === 'all' ? `all (${rows.length})` : `${o.value} (${counts[o.value] || 0})`;
  }
  // Your documents first, then /_replicate jobs, then the replications of shares.
  const rank = (r) => (r.kind === 'job' ? 1 : shareOfDoc(r.name) ? 2 : 0);
  rows.sort((a, b) => rank(a) - rank(b));
  // Sample every row, shown or not, so a filter change does not lose the last minute.
  const html = [];
  for (const r of rows) {
    const h = rowHtml(r, now);
    if (repl.filter === 'all' || r.state === repl.filter) html.push(h);
  }
  for (const k of repl.samples.keys()) {
    if (!rows.some((r) => r.key === k)) repl.samples.delete(k);
  }
  $('#replication-rows').innerHTML = html.join('');
  $('#replications-empty').hidden = html.length > 0;
  renderShares(data);
}

function renderShares(data) {
  const box = $('#shares');
  if (repl.sharesError) {
    box.innerHTML = `<p class="error-text">Shares could not be read: ${esc(repl.sharesError)}</p>`;
    return;
  }
  if (!repl.shares) return;
  if (!repl.shares.length) {
    box.innerHTML = '<p class="muted">No shares. <code>settee share create</code> or <code>POST /_sharing</code> makes one: a pair of replications kept in step.</p>';
    return;
  }
  const docs = new Map(data.docs.map((d) => [d.doc_id, d]));
  box.innerHTML = repl.shares.map((sh) => {
    const dirs = (sh.directions || []).map((d) => {
      const live = docs.get(d.doc_id);
      const st = (live && live.state) || d.state || 'initializing';
      const written = live && live.info && live.info.docs_written != null ? live.info.docs_written : d.docs_written;
      const err = (live && live.info && live.info.error) || d.error;
      return `<tr data-testid="share-direction" data-direction="${esc(d.direction)}" data-doc-id="${esc(d.doc_id)}">
        <td><b>${esc(d.direction)}</b></td>
        <td>${esc(endpointText(d.source))} <span class="arrow">→</span> ${esc(endpointText(d.target))}</td>
        <td><span class="pill state-${esc(st)}" data-field="state">${esc(st)}</span>${err ? `<div class="reason">${esc(err)}</div>` : ''}</td>
        <td class="num" data-field="docs_written">${num(written)} written</td>
      </tr>`;
    }).join('');
    const conflicts = (sh.conflicts || []).length;
    return `<div class="card share" data-testid="share" data-share-id="${esc(sh.id)}">
      <div class="share-head"><b>${esc(sh.id)}</b> <span class="tag">${esc(sh.mode)}</span>
        <code>${esc(sh.local)}</code> <span class="arrow">⇄</span> <code>${esc(endpointText(sh.remote))}</code>
        <span class="muted">· ${num(sh.docs_shared)} documents shared · ${conflicts} conflicted</span>
        ${conflicts && sh.local ? `<a href="#database/${enc(sh.local)}/_all_docs">see conflicts</a>` : ''}
      </div>
      ${sh.last_error ? `<div class="reason">${esc(sh.last_error)}</div>` : ''}
      <table class="grid compact"><tbody>${dirs}</tbody></table>
    </div>`;
  }).join('');
}

// ---------------------------------------------------------------------------------------------
// The editor: a form and the document's JSON, kept in step; checked as you type.

const FORM_KEYS = ['_id', 'source', 'target', 'continuous', 'create_target', 'selector'];
const ed = { doc: {}, seq: 0, valid: false, timer: null, formError: false, jsonError: false };

function initEditor() {
  for (const el of $$('#repl-form [data-field]')) {
    el.addEventListener(el.type === 'checkbox' ? 'change' : 'input', formChanged);
  }
  $('#json-editor').addEventListener('input', jsonChanged);
  $('#json-editor').addEventListener('blur', () => {
    // Tidy the JSON once the user leaves it, if it parses.
    if (!ed.jsonError && Object.keys(ed.doc).length) $('#json-editor').value = pretty(ed.doc);
  });
  $('#save-btn').addEventListener('click', save);
  $('#preview-btn').addEventListener('click', preview);
  $('#repl-form').addEventListener('submit', (e) => e.preventDefault());
}

function openEditor() {
  $('#save-error').hidden = true;
  fillForm(ed.doc);
  $('#json-editor').value = Object.keys(ed.doc).length ? pretty(ed.doc) : '';
  if (Object.keys(ed.doc).length) scheduleValidate();
  else setValidation('empty', 'Fill in the form or paste a replication document: it is checked as you type.');
}

// Form fields first, in the form's order, then everything else as it was.
function ordered(doc) {
  const out = {};
  for (const k of FORM_KEYS) if (k in doc) out[k] = doc[k];
  for (const k of Object.keys(doc)) if (!(k in out)) out[k] = doc[k];
  return out;
}

function setEndpoint(doc, key, value) {
  const cur = doc[key];
  if (isObject(cur)) {
    // Keep `headers` / `auth`: the field edits the URL only.
    doc[key] = { ...cur, url: value };
  } else if (value) {
    doc[key] = value;
  } else {
    delete doc[key];
  }
}

function setFlag(doc, key, on) {
  if (on) doc[key] = true;
  else delete doc[key];
}

function formChanged() {
  const doc = { ...ed.doc };
  const id = $('#f-id').value.trim();
  if (id) doc._id = id;
  else delete doc._id;
  setEndpoint(doc, 'source', $('#f-source').value.trim());
  setEndpoint(doc, 'target', $('#f-target').value.trim());
  setFlag(doc, 'continuous', $('#f-continuous').checked);
  setFlag(doc, 'create_target', $('#f-create-target').checked);
  const selText = $('#f-selector').value.trim();
  const selErr = $('#f-selector-error');
  if (!selText) {
    delete doc.selector;
    selErr.hidden = true;
  } else {
    try {
      doc.selector = JSON.parse(selText);
      selErr.hidden = true;
    } catch (e) {
      selErr.textContent = `The selector is not valid JSON: ${e.message}`;
      selErr.hidden = false;
      ed.formError = true;
      invalidate('syntax', 'Fix the selector\'s JSON first.');
      return;
    }
  }
  ed.formError = false;
  ed.jsonError = false;
  ed.doc = ordered(doc);
  $('#json-editor').value = pretty(ed.doc);
  $('#json-error').hidden = true;
  scheduleValidate();
}

function jsonChanged() {
  const text = $('#json-editor').value;
  const err = $('#json-error');
  if (!text.trim()) {
    ed.doc = {};
    ed.jsonError = false;
    err.hidden = true;
    fillForm(ed.doc);
    invalidate('empty', 'Fill in the form or paste a replication document: it is checked as you type.');
    return;
  }
  const refuse = (shown, why) => {
    err.textContent = shown;
    err.hidden = false;
    ed.jsonError = true;
    invalidate('syntax', why);
  };
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    refuse(`Not valid JSON yet: ${e.message}`, 'The document is not valid JSON.');
    return;
  }
  if (!isObject(v)) {
    refuse('A replication document is a JSON object ({…}).', 'The document must be a JSON object.');
    return;
  }
  err.hidden = true;
  ed.jsonError = false;
  ed.doc = v;
  fillForm(v);
  scheduleValidate();
}

function describeEndpoint(e) {
  if (!isObject(e)) return '';
  const extra = [];
  if (isObject(e.headers)) extra.push(`headers: ${Object.keys(e.headers).join(', ')}`);
  if (isObject(e.auth)) extra.push(`auth: ${Object.keys(e.auth).join(', ')}`);
  const others = Object.keys(e).filter((k) => !['url', 'headers', 'auth'].includes(k));
  if (others.length) extra.push(others.join(', '));
  return extra.length ? `Kept from the JSON: ${extra.join('; ')} (values not shown).` : '';
}

function fillForm(doc) {
  $('#f-id').value = doc._id == null ? '' : String(doc._id);
  for (const k of ['source', 'target']) {
    const e = doc[k];
    $(`#f-${k}`).value = e == null ? '' : typeof e === 'string' ? e : isObject(e) ? String(e.url ?? '') : JSON.stringify(e);
    const note = $(`#f-${k}-note`);
    note.textContent = describeEndpoint(e);
    note.hidden = !note.textContent;
  }
  $('#f-continuous').checked = doc.continuous === true;
  $('#f-create-target').checked = doc.create_target === true;
  $('#f-selector').value = doc.selector === undefined ? '' : pretty(doc.selector);
  $('#f-selector-error').hidden = true;
  ed.formError = false;
}

function invalidate(kind, message) {
  clearTimeout(ed.timer);
  ed.seq += 1; // an answer still on its way is for an older text
  ed.valid = false;
  setValidation(kind, message);
  updateSave();
}

function scheduleValidate() {
  clearTimeout(ed.timer);
  ed.seq += 1;
  ed.valid = false;
  updateSave();
  setValidation('pending', 'Checking…');
  ed.timer = setTimeout(validateNow, 300);
}

async function validateNow() {
  const seq = ++ed.seq;
  try {
    const v = await api('POST', '_replicator/_validate', ed.doc);
    if (seq !== ed.seq) return;
    ed.valid = Boolean(v.ok);
    showVerdict(v);
  } catch (e) {
    if (seq !== ed.seq) return;
    ed.valid = false;
    setValidation('unavailable', `Could not check the document: ${e.message}`);
  }
  updateSave();
}

function setValidation(kind, message, errors = [], warnings = []) {
  const box = $('#validation');
  box.dataset.state = kind;
  $('#validation-status').textContent = message;
  $('#validation-errors').innerHTML = errors.map((e) => `<li class="error" data-testid="validation-error">${esc(e)}</li>`).join('');
  $('#validation-warnings').innerHTML = warnings.map((w) => `<li class="warning" data-testid="validation-warning">${esc(w)}</li>`).join('');
}

function showVerdict(v) {
  const errors = v.errors || [];
  const warnings = v.warnings || [];
  if (v.ok) {
    const w = warnings.length ? ` · ${warnings.length} warning${warnings.length > 1 ? 's' : ''}` : '';
    setValidation('ok', `✓ Valid: ${redactUrl(v.summary || 'ready to save')}${w}`, [], warnings);
  } else {
    setValidation('errors', `✗ ${errors.length} problem${errors.length > 1 ? 's' : ''} to fix before saving`, errors, warnings);
  }
}

function updateSave() {
  $('#save-btn').disabled = !ed.valid || ed.formError || ed.jsonError;
}

async function save() {
  if (!ed.valid) return;
  const out = $('#save-error');
  out.hidden = true;
  const doc = ed.doc;
  const button = $('#save-btn');
  button.disabled = true;
  try {
    const r = doc._id
      ? await api('PUT', `_replicator/${enc(doc._id)}`, doc)
      : await api('POST', '_replicator', doc);
    ed.doc = {};
    ed.valid = false;
    state.flash = `Saved replication document ${r.id}: it is starting.`;
    location.hash = '#/replication';
  } catch (e) {
    let msg = `Save failed: ${e.message}`;
    if (e.error === 'conflict') {
      msg += doc._rev
        ? ' — a new document must not carry `_rev`: remove it.'
        : ' — a document with this id exists: choose another id.';
    }
    out.textContent = msg;
    out.hidden = false;
    updateSave();
  }
}

async function preview() {
  const box = $('#preview-result');
  box.hidden = false;
  if (ed.jsonError || ed.formError) {
    box.innerHTML = '<p class="error-text">Fix the JSON first.</p>';
    return;
  }
  const doc = { ...ed.doc };
  const notes = [];
  if (doc.continuous) {
    notes.push('A continuous replication: what its next pass sends, from the changes there now.');
  }
  delete doc._rev;
  box.dataset.state = 'pending';
  box.innerHTML = '<p class="muted">Asking the source…</p>';
  try {
    const p = await api('POST', '_replicate/_preview?limit=10', doc);
    const docs = p.docs || [];
    const counts = Object.entries(p.counts || {})
      .filter(([k]) => k !== 'total')
      .map(([k, n]) => `${esc(n)} ${esc(k.replace('_', ' '))}`).join(', ');
    box.dataset.state = 'ok';
    box.innerHTML = `<h2>Preview: the first ${docs.length} document${docs.length === 1 ? '' : 's'} this replication would send</h2>
      <p class="muted">${notes.map(esc).join(' ')} From sequence ${esc(JSON.stringify(p.since))} to ${esc(JSON.stringify(p.last_seq))}${counts ? ` · on the target: ${counts}` : ''}.</p>
      ${docs.length ? `<table class="grid compact"><thead><tr><th>Id</th><th>Revisions</th><th>On the target</th></tr></thead><tbody>
        ${docs.map((d) => `<tr data-testid="preview-doc" data-id="${esc(d.id)}"><td>${esc(d.id)}${d.deleted ? ' <span class="tag">deleted</span>' : ''}${d.purge ? ' <span class="tag">purge</span>' : ''}</td><td class="seq">${esc((d.revs || []).join(', '))}</td><td>${esc(d.target)}</td></tr>`).join('')}
      </tbody></table>` : '<p>Nothing to send: no matching document is missing on the target.</p>'}`;
  } catch (e) {
    box.dataset.state = 'error';
    box.innerHTML = `<p class="error-text" data-testid="preview-error">Preview failed: ${esc(e.message)}</p>`;
  }
}

// ---------------------------------------------------------------------------------------------
// Databases, documents, one document.

const PAGE = 50;

function initDatabases() {
  $('#docs-prev').addEventListener('click', () => pageDocs(-1));
  $('#docs-next').addEventListener('click', () => pageDocs(1));
}

async function loadDatabases() {
  const body = $('#databases tbody');
  body.innerHTML = '<tr><td colspan="4" class="muted">Loading…</td></tr>';
  try {
    const names = await api('GET', '_all_dbs');
    const infos = names.length ? await api('POST', '_dbs_info', { keys: names }) : [];
    const byName = new Map(infos.map((i) => [i.key, i.info || null]));
    body.innerHTML = names.map((n) => {
      const i = byName.get(n) || {};
      return `<tr data-testid="db-row" data-db="${esc(n)}">
        <td><a href="#database/${enc(n)}/_all_docs">${esc(n)}</a></td>
        <td class="num" data-field="doc_count">${num(i.doc_count)}</td>
        <td class="num">${num(i.doc_del_count)}</td>
        <td class="seq">${esc(i.update_seq ?? '')}</td></tr>`;
    }).join('') || '<tr><td colspan="4" class="muted">No databases.</td></tr>';
  } catch (e) {
    body.innerHTML = `<tr><td colspan="4" class="error-text">${esc(explain(e))}</td></tr>`;
  }
}

function pageDocs(dir) {
  const r = parseHash();
  const skip = Math.max(0, (r.skip || 0) + dir * PAGE);
  location.hash = `#database/${enc(r.db)}/_all_docs${skip ? `?skip=${skip}` : ''}`;
}

async function loadDocs(db, skip) {
  $('#docs-title').textContent = db;
  const body = $('#docs tbody');
  body.innerHTML = '<tr><td colspan="2" class="muted">Loading…</td></tr>';
  $('#db-conflicts').innerHTML = '';
  $('#docs').dataset.db = db;
  try {
    const [all, conflicts] = await Promise.all([
      api('GET', `${enc(db)}/_all_docs?limit=${PAGE + 1}&skip=${skip}`),
      api('GET', `${enc(db)}/_conflicts?limit=50`).catch((e) => ({ failed: e })),
    ]);
    const rows = all.rows || [];
    const more = rows.length > PAGE;
    const shown = rows.slice(0, PAGE);
    body.innerHTML = shown.map((r) => `<tr data-testid="doc-row" data-id="${esc(r.id)}">
        <td><a href="#database/${enc(db)}/${enc(r.id)}">${esc(r.id)}</a></td>
        <td class="seq">${esc(r.value && r.value.rev)}</td></tr>`).join('')
      || '<tr><td colspan="2" class="muted">No documents.</td></tr>';
    $('#docs-range').textContent = shown.length
      ? `${skip + 1}–${skip + shown.length} of ${all.total_rows}` : `0 of ${all.total_rows}`;
    $('#docs-prev').disabled = skip === 0;
    $('#docs-next').disabled = !more;
    const box = $('#db-conflicts');
    if (conflicts.failed) {
      box.innerHTML = `<p class="error-text">${esc(explain(conflicts.failed))}</p>`;
    } else if (!(conflicts.rows || []).length) {
      box.innerHTML = '<p class="muted">None: every document has one live revision.</p>';
    } else {
      box.innerHTML = `<table class="grid compact"><thead><tr><th>Id</th><th>Winner</th><th>Losing leaves</th><th>Fields that differ</th></tr></thead><tbody>
        ${conflicts.rows.map((c) => `<tr data-testid="conflict-row" data-id="${esc(c.id)}">
          <td><a href="#database/${enc(db)}/${enc(c.id)}">${esc(c.id)}</a></td><td class="seq">${esc(c.winner)}</td>
          <td class="seq">${esc((c.losers || []).join(', '))}</td><td>${esc((c.fields || []).join(', '))}</td></tr>`).join('')}
        </tbody></table>${conflicts.next ? '<p class="muted">More conflicted documents follow.</p>' : ''}`;
    }
  } catch (e) {
    body.innerHTML = `<tr><td colspan="2" class="error-text">${esc(explain(e))}</td></tr>`;
  }
}

async function loadDoc(db, id) {
  $('#doc-title').textContent = `${db} / ${id}`;
  $('#doc-back').href = `#database/${enc(db)}/_all_docs`;
  const pre = $('#doc-json');
  pre.textContent = 'Loading…';
  $('#doc-rev').textContent = '';
  $('#doc-conflicts').innerHTML = '';
  $('#conflict-json').hidden = true;
  try {
    const doc = await api('GET', `${enc(db)}/${enc(id)}?conflicts=true`);
    const shown = redact(doc);
    pre.innerHTML = highlight(shown);
    $('#doc-redacted').hidden = JSON.stringify(shown) === JSON.stringify(doc);
    $('#doc-rev').textContent = doc._rev || '';
    const conflicts = doc._conflicts || [];
    const box = $('#doc-conflicts');
    box.dataset.count = String(conflicts.length);
    if (!conflicts.length) {
      box.innerHTML = '<p class="muted">No conflicting revisions.</p>';
      return;
    }
    box.innerHTML = `<p>${conflicts.length} losing revision${conflicts.length > 1 ? 's' : ''}; click one to see it:</p>
      <ul class="revs">${conflicts.map((r) => `<li><button type="button" class="link" data-testid="conflict-rev" data-rev="${esc(r)}">${esc(r)}</button></li>`).join('')}</ul>
      <p class="muted">Resolve with <code>POST /${esc(db)}/_conflicts/${esc(id)}</code> (keep one, or merge).</p>`;
    for (const b of $$('button[data-rev]', box)) {
      b.addEventListener('click', async () => {
        const out = $('#conflict-json');
        out.hidden = false;
        try {
          out.innerHTML = highlight(redact(await api('GET', `${enc(db)}/${enc(id)}?rev=${enc(b.dataset.rev)}`)));
        } catch (e) {
          out.textContent = explain(e);
        }
      });
    }
  } catch (e) {
    pre.innerHTML = `<span class="error-text">${esc(explain(e))}</span>`;
  }
}

boot();
