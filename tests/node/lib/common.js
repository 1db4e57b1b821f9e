'use strict';
// Shared helpers for the settee Node.js harness: argument parsing, failure
// reporting, a hard watchdog, plain-HTTP helpers (Node's global fetch) and a
// PouchDB client factory (pouchdb-core 9 + http + memory + replication).

const crypto = require('crypto');
const http = require('http');
const https = require('https');

function fail(msg) {
  process.stderr.write('FAIL: ' + msg + '\n');
  process.exit(1);
}

class AssertionError extends Error {}

function assert(cond, msg) {
  if (!cond) throw new AssertionError(msg);
}

// Parse --key value / --flag arguments. `spec` maps name -> 'string' | 'int'
// | 'bool' | 'json'. Unknown arguments are an error.
function parseArgs(spec, argv) {
  argv = argv || process.argv.slice(2);
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) fail('unexpected argument: ' + a);
    let name = a.slice(2);
    let val;
    const eq = name.indexOf('=');
    if (eq >= 0) { val = name.slice(eq + 1); name = name.slice(0, eq); }
    const type = spec[name];
    if (!type) fail('unknown option --' + name + ' (known: ' + Object.keys(spec).map((k) => '--' + k).join(' ') + ')');
    if (type === 'bool') { out[name] = val === undefined ? true : val !== 'false'; continue; }
    if (val === undefined) {
      if (i + 1 >= argv.length) fail('option --' + name + ' needs a value');
      val = argv[++i];
    }
    if (type === 'int') {
      if (!/^-?\d+$/.test(val)) fail('option --' + name + ' needs an integer, got ' + val);
      out[name] = parseInt(val, 10);
    } else if (type === 'json') {
      try { out[name] = JSON.parse(val); } catch (e) { fail('option --' + name + ' is not valid JSON: ' + e.message); }
    } else {
      out[name] = val;
    }
  }
  return out;
}

// Run main() with a hard time limit; any exception -> exit 1 with message.
function runMain(main, timeoutSec) {
  const t = setTimeout(() => fail('timed out after ' + timeoutSec + ' s'), timeoutSec * 1000);
  t.unref();
  Promise.resolve().then(main).then(
    () => process.exit(0),
    (err) => {
      if (err instanceof AssertionError) fail(err.message);
      fail(describeError(err));
    });
}

// PouchDB errors carry status/name/reason and often an empty message.
function describeError(err) {
  if (!err || typeof err !== 'object') return String(err);
  const parts = [];
  for (const k of ['status', 'name', 'message', 'reason', 'docId', 'error']) {
    if (err[k] !== undefined && err[k] !== '' && typeof err[k] !== 'object') parts.push(k + '=' + JSON.stringify(err[k]));
  }
  if (err.result) parts.push('result=' + JSON.stringify(err.result).slice(0, 500));
  return (parts.join(' ') || 'error') + '\n' + (err.stack || '');
}

function printResult(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// Split "http://host:port/db" into { server: "http://host:port", db: "db", url }.
function splitDbUrl(u) {
  let parsed;
  try { parsed = new URL(u); } catch (e) { fail('not a URL: ' + u); }
  const path = parsed.pathname.replace(/\/+$/, '');
  const idx = path.lastIndexOf('/');
  const db = decodeURIComponent(path.slice(idx + 1));
  if (!db) fail('URL has no database name: ' + u);
  // keep credentials (user:pass@) out of the server string; they go in headers
  const auth = parsed.username ? 'Basic ' + Buffer.from(decodeURIComponent(parsed.username) + ':' + decodeURIComponent(parsed.password)).toString('base64') : null;
  const server = parsed.protocol + '//' + parsed.host + path.slice(0, idx);
  const creds = parsed.username ? { username: decodeURIComponent(parsed.username), password: decodeURIComponent(parsed.password) } : null;
  return { server, db, url: server + '/' + encodeURIComponent(db), auth, creds };
}

// Minimal HTTP client bound to one database URL.
function dbClient(dbUrl, opts) {
  opts = opts || {};
  // opts.root: the URL is a server, not a database (paths are then "/db/...").
  const info = opts.root ? { url: dbUrl.replace(/\/+$/, ''), auth: null } : splitDbUrl(dbUrl);
  const timeoutMs = opts.timeoutMs || 60000;
  async function req(method, path, body, extraHeaders) {
    const headers = Object.assign({ Accept: 'application/json' }, extraHeaders || {});
    if (info.auth) headers.Authorization = info.auth;
    let payload;
    if (body !== undefined) {
      headers['Content-Type'] = headers['Content-Type'] || 'application/json';
      payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    }
    const url = info.url + path;
    const res = await fetch(url, { method, headers, body: payload, signal: AbortSignal.timeout(timeoutMs) });
    const buf = Buffer.from(await res.arrayBuffer());
    let json;
    const ct = res.headers.get('content-type') || '';
    if (ct.includes('json') || (buf.length && (buf[0] === 0x7b || buf[0] === 0x5b))) {
      try { json = JSON.parse(buf.toString('utf8')); } catch (e) { json = undefined; }
    }
    return { status: res.status, headers: res.headers, json, buf, method, url };
  }
  async function expect(method, path, body, okStatuses, extraHeaders) {
    const r = await req(method, path, body, extraHeaders);
    if (!okStatuses.includes(r.status)) {
      throw new AssertionError(method + ' ' + r.url + ' -> HTTP ' + r.status + ' (expected ' + okStatuses.join('/') + '): ' + r.buf.toString('utf8').slice(0, 500));
    }
    return r;
  }
  return {
    info,
    req,
    expect,
    async recreate() {
      await expect('DELETE', '', undefined, [200, 202, 404]);
      await expect('PUT', '', undefined, [201, 202]);
    },
    async ensure() {
      await expect('PUT', '', undefined, [201, 202, 412]);
    },
    async bulkDocs(docs, newEdits) {
      const body = { docs };
      if (newEdits === false) body.new_edits = false;
      const r = await expect('POST', '/_bulk_docs', body, [201, 202]);
      if (newEdits !== false) {
        assert(Array.isArray(r.json) && r.json.length === docs.length,
          '_bulk_docs returned ' + (Array.isArray(r.json) ? r.json.length : typeof r.json) + ' results for ' + docs.length + ' docs');
        r.json.forEach((row, i) => {
          assert(row.ok === true || (row.rev && !row.error), '_bulk_docs doc ' + (docs[i]._id || i) + ' failed: ' + JSON.stringify(row));
        });
      } else if (Array.isArray(r.json)) {
        r.json.forEach((row) => assert(!row.error, '_bulk_docs new_edits:false failed: ' + JSON.stringify(row)));
      }
      return r.json;
    },
  };
}

// PouchDB client: pouchdb-core 9 with http, memory and replication plugins.
let _PouchDB;
function PouchDB() {
  if (!_PouchDB) {
    _PouchDB = require('pouchdb-core')
      .plugin(require('pouchdb-adapter-http'))
      .plugin(require('pouchdb-adapter-memory'))
      .plugin(require('pouchdb-replication'));
  }
  return _PouchDB;
}

// Open a remote database with PouchDB's http adapter.
function remoteDb(dbUrl) {
  const P = PouchDB();
  const info = splitDbUrl(dbUrl);
  const opts = { adapter: 'http' };
  if (info.creds) opts.auth = info.creds;
  return new P(info.url, opts);
}

// Run a one-shot replication, bounded in time; returns PouchDB's result plus seconds.
async function replicate(source, target, opts, timeoutSec) {
  const P = PouchDB();
  const t0 = process.hrtime.bigint();
  const rep = P.replicate(source, target, Object.assign({ retry: false }, opts || {}));
  let timer;
  const res = await Promise.race([
    rep,
    new Promise((_, rej) => { timer = setTimeout(() => { rep.cancel(); rej(new AssertionError('replication timed out after ' + timeoutSec + ' s')); }, timeoutSec * 1000); }),
  ]).finally(() => clearTimeout(timer));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { res, seconds };
}

function repStats(r) {
  const res = r.res;
  return {
    status: res.status,
    docs_read: res.docs_read,
    docs_written: res.docs_written,
    doc_write_failures: res.doc_write_failures,
    errors: (res.errors || []).length,
    last_seq: res.last_seq,
    seconds: round(r.seconds, 3),
  };
}

function round(x, digits) {
  const f = Math.pow(10, digits === undefined ? 1 : digits);
  return Math.round(x * f) / f;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

// Run async fn over items with bounded concurrency.
async function pool(items, concurrency, fn) {
  let next = 0;
  const workers = [];
  for (let w = 0; w < Math.min(concurrency, items.length); w++) {
    workers.push((async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i], i);
      }
    })());
  }
  await Promise.all(workers);
}

// Order-insensitive (for object keys) deep equality via canonical JSON.
function canonical(v) {
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']';
  if (v && typeof v === 'object') {
    return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canonical(v[k])).join(',') + '}';
  }
  return JSON.stringify(v);
}

function md5Digest(buf) {
  return 'md5-' + crypto.createHash('md5').update(buf).digest('base64');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Streaming continuous-feed reader built on node:http (bounded by the caller).
function openContinuous(dbUrl, onLine) {
  const info = splitDbUrl(dbUrl);
  const u = new URL(info.url + '/_changes?feed=continuous&since=now&heartbeat=1000');
  const mod = u.protocol === 'https:' ? https : http;
  const headers = { Accept: 'application/json' };
  if (info.auth) headers.Authorization = info.auth;
  return new Promise((resolve, reject) => {
    const req = mod.get(u, { headers, agent: false }, (res) => {
      if (res.statusCode !== 200) { reject(new AssertionError('continuous _changes -> HTTP ' + res.statusCode)); res.resume(); return; }
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        const now = process.hrtime.bigint();
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue; // heartbeat
          let obj;
          try { obj = JSON.parse(line); } catch (e) { continue; }
          onLine(obj, now);
        }
      });
      res.on('error', () => {});
      resolve({ close: () => { req.destroy(); } });
    });
    req.on('error', (e) => reject(e));
  });
}

module.exports = {
  openContinuous,
  fail, assert, AssertionError, parseArgs, runMain, printResult, splitDbUrl, dbClient,
  PouchDB, remoteDb, replicate, repStats, round, percentile, pool, canonical, md5Digest, sleep,
};
