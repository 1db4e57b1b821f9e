#!/usr/bin/env node
'use strict';
// Transparent HTTP logging proxy, to capture exactly which requests a client
// (e.g. PouchDB's replicator) sends to a CouchDB-compatible server.
// Binds 127.0.0.1 on a free port, prints {"url":"http://127.0.0.1:PORT"},
// runs until SIGTERM/SIGINT. Streams bodies both ways (continuous feeds work).
//
// Options:
//   --target URL      server to forward to, e.g. http://127.0.0.1:5984 (required)
//   --port N          port to bind (default 0 = free port)
//   --log FILE|-      where to write one JSON line per request (default '-' = stderr)
//   --bodies N        also log the first N bytes of request bodies (default 0)
//   --headers         log all request headers (Authorization/Cookie values masked)
//   --max-requests N  stop after N requests (default 1000000)

const http = require('http');
const fs = require('fs');
const { parseArgs, fail } = require('./lib/common');

const args = parseArgs({ target: 'string', port: 'int', log: 'string', bodies: 'int', headers: 'bool', 'max-requests': 'int' });
if (!args.target) fail('--target URL is required');
const target = new URL(args.target);
if (target.protocol !== 'http:') fail('only http targets are supported');
const bodies = args.bodies || 0;
const maxRequests = args['max-requests'] || 1000000;
const log = !args.log || args.log === '-' ? process.stderr : fs.createWriteStream(args.log, { flags: 'a' });
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const pick = (h, names) => { const o = {}; for (const n of names) if (h[n] !== undefined) o[n] = h[n]; return o; };

let seq = 0;
const server = http.createServer((req, res) => {
  const n = ++seq;
  if (n > maxRequests) { res.writeHead(503); res.end(); return; }
  const t0 = process.hrtime.bigint();
  const headers = Object.assign({}, req.headers, { host: target.host });
  const up = http.request({
    host: target.hostname, port: target.port || 80, method: req.method,
    path: req.url, headers, agent,
  });
  let reqBody = [];
  let reqLen = 0;
  req.on('data', (c) => { reqLen += c.length; if (bodies && Buffer.concat(reqBody).length < bodies) reqBody.push(c); });
  req.pipe(up);
  let resLen = 0;
  let status = 0;
  let resHeaders = {};
  const finish = (err) => {
    const entry = Object.assign({ n, method: req.method, url: req.url },
      pick(req.headers, ['accept', 'content-type', 'authorization']),
      { req_bytes: reqLen, status, res_bytes: resLen },
      pick(resHeaders, ['content-type', 'transfer-encoding']),
      { ms: Math.round(Number(process.hrtime.bigint() - t0) / 1e4) / 100 });
    if (entry.authorization) entry.authorization = '(present)';
    if (args.headers) {
      entry.req_headers = Object.assign({}, req.headers);
      for (const k of ['authorization', 'cookie']) if (entry.req_headers[k]) entry.req_headers[k] = '(present)';
    }
    if (bodies && reqBody.length) entry.req_body = Buffer.concat(reqBody).subarray(0, bodies).toString('utf8');
    if (err) entry.error = String(err.message || err);
    log.write(JSON.stringify(entry) + '\n');
  };
  up.on('response', (ur) => {
    status = ur.statusCode;
    resHeaders = ur.headers;
    res.writeHead(ur.statusCode, ur.rawHeaders);
    ur.on('data', (c) => { resLen += c.length; });
    ur.pipe(res);
    ur.on('end', () => finish());
    ur.on('aborted', () => finish(new Error('upstream aborted')));
  });
  up.on('error', (e) => {
    if (!res.headersSent) { res.writeHead(502); res.end(); }
    else res.destroy();
    finish(e);
  });
  res.on('close', () => { if (!res.writableFinished) up.destroy(); });
});
server.keepAliveTimeout = 5000;
server.listen(args.port || 0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ url: 'http://127.0.0.1:' + server.address().port }) + '\n');
});
server.on('error', (e) => fail('log-proxy could not listen: ' + e.message));
const sockets = new Set();
server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
function stop() {
  server.close();
  for (const s of sockets) s.destroy();
  agent.destroy();
  if (log !== process.stderr) log.end(() => process.exit(0));
  setTimeout(() => process.exit(0), 200).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
