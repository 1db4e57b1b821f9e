#!/usr/bin/env node
'use strict';
// Start pouchdb-server 4.2.0 (express-pouchdb, full CouchDB mode) with the
// in-memory adapter, bound to 127.0.0.1 on a free port (or --port N).
// Prints {"url":"http://127.0.0.1:PORT"} once listening; runs until SIGTERM/SIGINT.
//
// This is the same wiring as pouchdb-server's lib/index.js with --in-memory,
// done in-process so that (a) the real bound port is known when using port 0,
// (b) no config.json / log.txt is written into the current directory.
//
// Options:
//   --port N                 port to bind (default 0 = a free ephemeral port)
//   --log-requests FILE|-    append one JSON line per HTTP request (method,
//                            url, selected headers, status, ms) to FILE ('-' = stderr)
//   --no-selector-shim       serve POST /db/_changes?filter=_selector exactly as stock
//                            pouchdb-server 4.2.0 does (it ignores the body's
//                            "selector", looks up _design/_selector and crashes).
//                            By default a small shim moves the body's selector into
//                            the query options so selector replication works, as on
//                            CouchDB.
//
// Uncaught exceptions inside pouchdb-server (it has some, e.g. unhandled 'error'
// events on changes feeds) are logged to stderr and the server keeps running.

const fs = require('fs');
const os = require('os');
const path = require('path');
const { createRequire } = require('module');
const { parseArgs, fail } = require('./lib/common');

const args = parseArgs({ port: 'int', 'log-requests': 'string', 'no-selector-shim': 'bool' });
const port = args.port === undefined ? 0 : args.port;
if (port < 0 || port > 65535) fail('bad --port ' + port);

// Resolve modules exactly as pouchdb-server itself would (its own PouchDB 7.x tree).
const srvRequire = createRequire(require.resolve('pouchdb-server/package.json'));
const express = srvRequire('express');
const PouchDB = srvRequire('pouchdb-core')
  .plugin(srvRequire('pouchdb-adapter-http'))
  .plugin(srvRequire('pouchdb-replication'))
  .plugin(srvRequire('pouchdb-mapreduce'))
  .plugin(srvRequire('pouchdb-adapter-memory'));
const expressPouchDB = srvRequire('express-pouchdb');
const onFinished = createRequire(require.resolve('express-pouchdb', { paths: [path.dirname(require.resolve('pouchdb-server/package.json'))] }))('on-finished');

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'settee-pouchdb-server-'));
function cleanup() {
  try { fs.rmSync(tmpDir, { recursive: true, force: true }); } catch (e) { /* ignore */ }
}

const app = express();

let logStream = null;
if (args['log-requests']) {
  logStream = args['log-requests'] === '-' ? process.stderr : fs.createWriteStream(args['log-requests'], { flags: 'a' });
  let seq = 0;
  app.use((req, res, next) => {
    const start = process.hrtime.bigint();
    const n = ++seq;
    onFinished(res, () => {
      const h = req.headers;
      logStream.write(JSON.stringify({
        n,
        method: req.method,
        url: req.originalUrl,
        accept: h.accept,
        content_type: h['content-type'],
        content_length: h['content-length'] !== undefined ? Number(h['content-length']) : undefined,
        status: res.statusCode,
        res_content_type: res.getHeader('content-type'),
        ms: Math.round(Number(process.hrtime.bigint() - start) / 1e4) / 100,
      }) + '\n');
    });
    next();
  });
}

if (!args['no-selector-shim']) {
  // CouchDB accepts POST /db/_changes?filter=_selector with {"selector": {...}} in the
  // body (PouchDB's replicator sends exactly this). express-pouchdb 4.2.0 only reads
  // doc_ids from the body, so pass the selector on via the query options.
  app.use((req, res, next) => {
    if (req.method !== 'POST' || !/\/_changes$/.test(req.path) || req.query.filter !== '_selector') return next();
    const chunks = [];
    let size = 0;
    req.on('data', (c) => { size += c.length; if (size <= 16 * 1024 * 1024) chunks.push(c); });
    req.on('end', () => {
      let body = {};
      try { body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'); } catch (e) {
        res.status(400).json({ error: 'bad_request', reason: 'invalid JSON body' });
        return;
      }
      if (!body || typeof body.selector !== 'object' || body.selector === null) {
        res.status(400).json({ error: 'bad_request', reason: 'Selector must be specified in POST payload' });
        return;
      }
      req.body = body;
      req._body = true; // body-parser: already parsed
      req.query.selector = JSON.stringify(body.selector); // express-pouchdb JSON.parses query values
      next();
    });
    req.on('error', next);
  });
}

process.on('uncaughtException', (err) => {
  process.stderr.write('pouchdb-server: uncaught exception (server kept running): ' + ((err && err.stack) || err) + '\n');
});

const pouchApp = expressPouchDB(PouchDB, {
  mode: 'fullCouchDB',
  inMemoryConfig: true,
  configPath: path.join(tmpDir, 'config.json'),
  logPath: path.join(tmpDir, 'log.txt'),
});
pouchApp.couchConfig.set('log', 'level', 'error', () => {});
pouchApp.couchConfig.set('pouchdb_server', 'in_memory', true, () => {});
app.use(pouchApp);

const server = app.listen(port, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(JSON.stringify({ url: 'http://127.0.0.1:' + addr.port }) + '\n');
});
server.on('error', (e) => { cleanup(); fail('pouchdb-server could not listen: ' + e.message); });

const sockets = new Set();
server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });

let stopping = false;
function stop(sig) {
  if (stopping) return;
  stopping = true;
  server.close(() => {});
  for (const s of sockets) s.destroy();
  cleanup();
  if (logStream && logStream !== process.stderr) logStream.end();
  // give the log stream a moment to flush, then exit
  setTimeout(() => process.exit(0), 50).unref();
  process.stderr.write('pouchdb-server stopping on ' + sig + '\n');
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGHUP', () => stop('SIGHUP'));
// If the parent goes away and closes our stdin pipe, stop too (only when stdin is a pipe).
process.on('exit', cleanup);
