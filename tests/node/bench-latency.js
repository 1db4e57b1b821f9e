#!/usr/bin/env node
'use strict';
// Write-to-target latency of a running continuous replication.
//
//   node bench-latency.js --source URL/db --target URL/db [--writes 200] [--pause-ms 20]
//
// Opens the target's continuous _changes feed, then writes --writes docs one at a time
// to the source and times each from the write's start to its event on the target.
// Output: {"latency_ms":{"p50":..,"p99":..,"mean":..,"max":..},"writes":..}

const C = require('./lib/common');

const args = C.parseArgs({ source: 'string', target: 'string', writes: 'int', 'pause-ms': 'int', prefix: 'string' });
if (!args.source || !args.target) C.fail('usage: bench-latency.js --source URL/db --target URL/db');
const N = args.writes || 200;
const PAUSE = args['pause-ms'] === undefined ? 20 : args['pause-ms'];
const PREFIX = args.prefix || 'lat';

async function main() {
  const src = C.dbClient(args.source, { timeoutMs: 30000 });
  const waiters = new Map();
  const feed = await C.openContinuous(args.target, (obj, now) => {
    const w = obj && obj.id && waiters.get(obj.id);
    if (w) { waiters.delete(obj.id); w(now); }
  });
  const waitFor = (id, ms) => new Promise((resolve, reject) => {
    const t = setTimeout(() => { waiters.delete(id); reject(new Error('no event on the target for ' + id + ' within ' + ms + ' ms')); }, ms);
    waiters.set(id, (now) => { clearTimeout(t); resolve(now); });
  });
  const lat = [];
  try {
    // The job must be live: probe until a write arrives (bounded).
    let live = false;
    for (let p = 0; p < 60 && !live; p++) {
      const id = PREFIX + '-probe-' + p;
      const ev = waitFor(id, 1000);
      await src.expect('PUT', '/' + id, { probe: p }, [201, 202]);
      try { await ev; live = true; } catch (e) { /* retry */ }
    }
    C.assert(live, 'the replication delivered none of 60 probe writes');
    for (let i = 0; i < N; i++) {
      const id = PREFIX + '-' + String(i).padStart(6, '0');
      const ev = waitFor(id, 10000);
      const start = process.hrtime.bigint();
      await src.expect('PUT', '/' + id, { n: i }, [201, 202]);
      lat.push(Number((await ev) - start) / 1e6);
      if (PAUSE) await C.sleep(PAUSE);
    }
  } finally {
    feed.close();
  }
  lat.sort((a, b) => a - b);
  C.printResult({
    latency_ms: {
      p50: C.round(C.percentile(lat, 50), 2),
      p99: C.round(C.percentile(lat, 99), 2),
      mean: C.round(lat.reduce((a, b) => a + b, 0) / lat.length, 2),
      max: C.round(lat[lat.length - 1], 2),
    },
    writes: N,
  });
}

C.runMain(main, 600);
