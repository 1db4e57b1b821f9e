#!/usr/bin/env node
'use strict';
// Validates the harness against pouchdb-server: starts start-pouchdb-server.js,
// runs every script against it (or against --url if given, e.g. settee), kills
// the server, prints one JSON line with every script's result.
//
//   node selftest.js [--url http://127.0.0.1:PORT] [--quick]
//
// --url    run against an already running CouchDB-compatible server instead of
//          starting pouchdb-server (databases settee-selftest-* are (re)created).
// --quick  smaller sizes (bench-http 2000 docs, bench-selector 20000 docs, ...).

const { spawn } = require('child_process');
const path = require('path');
const C = require('./lib/common');

const args = C.parseArgs({ url: 'string', quick: 'bool' });
const node = process.execPath;
const here = __dirname;
let server = null;

function runScript(script, argv, timeoutSec) {
  return new Promise((resolve, reject) => {
    const child = spawn(node, [path.join(here, script), ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const t = setTimeout(() => { child.kill('SIGKILL'); }, timeoutSec * 1000);
    child.on('close', (code, sig) => {
      clearTimeout(t);
      if (code !== 0) return reject(new C.AssertionError(script + ' ' + argv.join(' ') + ' exited ' + (code === null ? sig : code) + ':\n' + err.slice(-3000)));
      const lines = out.trim().split('\n');
      try { resolve(JSON.parse(lines[lines.length - 1])); } catch (e) { reject(new C.AssertionError(script + ' printed no JSON line: ' + out.slice(-500))); }
    });
  });
}

function startServer() {
  return new Promise((resolve, reject) => {
    server = spawn(node, [path.join(here, 'start-pouchdb-server.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    const t = setTimeout(() => reject(new C.AssertionError('pouchdb-server did not start within 30 s')), 30000);
    server.stdout.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) { clearTimeout(t); try { resolve(JSON.parse(buf.slice(0, nl)).url); } catch (e) { reject(e); } }
    });
    server.on('exit', (code) => { clearTimeout(t); reject(new C.AssertionError('pouchdb-server exited early with ' + code)); });
  });
}

function stopServer() {
  if (server && server.exitCode === null) server.kill('SIGTERM');
}
process.on('exit', stopServer);

async function main() {
  const url = args.url ? args.url.replace(/\/+$/, '') : await startServer();
  const q = args.quick;
  const db = (n) => url + '/settee-selftest-' + n;
  const results = { server: args.url ? url : 'pouchdb-server (start-pouchdb-server.js)' };
  results.roundtrip_memory = await runScript('roundtrip.js', ['--source', db('src'), '--via', 'memory', '--target', db('tgt'), '--populate'], 300);
  results.roundtrip_http = await runScript('roundtrip.js', ['--source', db('src'), '--via', db('via'), '--target', db('tgt2'), '--populate'], 300);
  results.bench_http = await runScript('bench-http.js', ['--url', db('bench'), '--docs', q ? '2000' : '20000', '--batch', q ? '500' : '1000', '--latency-writes', q ? '50' : '200'], 600);
  results.bench_replicate = await runScript('bench-replicate.js', ['--source', db('bench'), '--target', db('bench-copy'), '--fresh-target'], 600);
  results.bench_replicate_selector = await runScript('bench-replicate.js', ['--source', db('seed'), '--target', db('seed-shared'), '--populate', q ? '2000' : '20000', '--seed-selector', '--fresh-target'], 600);
  results.bench_selector = await runScript('bench-selector.js', ['--docs', q ? '20000' : '200000'], 600);
  delete results.bench_selector.selector;
  C.printResult(results);
  stopServer();
}

C.runMain(main, 1800);
