#!/usr/bin/env node
'use strict';
// Plain-HTTP benchmark of a CouchDB-compatible database; same client for every server.
//
//   node bench-http.js --url URL/db [--docs 20000] [--batch 1000] [--latency-writes 200]
//                      [--pause-ms 5] [--timeout SEC]
//
// 1. DELETE + PUT the db (fresh).
// 2. Ingest: --docs docs of ~1 KiB JSON via POST _bulk_docs in batches of --batch,
//    sequentially; every row must be ok.
// 3. Read: GET _changes?include_docs=true, read + JSON.parse the whole body;
//    must return --docs results with docs.
// 4. Latency: open GET _changes?feed=continuous&since=now&heartbeat=1000, wait for a
//    probe doc's event (proves the feed is live), then write --latency-writes docs
//    one at a time (PUT /db/id), each followed by waiting for its change line and a
//    --pause-ms pause. Latency = PUT start -> change line received.
//
// Output: {"ingest_docs_per_s":..,"changes_docs_per_s":..,"latency_ms":{"p50":..,"p99":..,
//          "mean":..,"max":..},"docs":..,"batch":..,"doc_bytes":..,"latency_writes":..}

const C = require('./lib/common');
const { assert } = C;

const args = C.parseArgs({ url: 'string', docs: 'int', batch: 'int', 'latency-writes': 'int', 'pause-ms': 'int', timeout: 'int' });
if (!args.url) C.fail('usage: bench-http.js --url URL/db [--docs 20000] [--batch 1000]');
const NDOCS = args.docs === undefined ? 20000 : args.docs;
const BATCH = args.batch || 1000;
const NLAT = args['latency-writes'] === undefined ? 200 : args['latency-writes'];
const PAUSE = args['pause-ms'] === undefined ? 5 : args['pause-ms'];
const TIMEOUT = args.timeout || 600;
if (NDOCS < 1 || NDOCS > 5000000) C.fail('--docs out of range');
if (BATCH < 1 || BATCH > 100000) C.fail('--batch out of range');
if (NLAT < 1 || NLAT > 100000) C.fail('--latency-writes out of range');

const pad = (i) => String(i).padStart(8, '0');
function makeDoc(i) {
  const d = {
    _id: 'bench-' + pad(i),
    type: ['collection', 'item', 'item_image', 'image'][i % 4],
    n: i,
    created_at: 1700000000000 + i,
    data: { name: 'Benchmark document number ' + i, collection_id: 'c' + (i % 97), tags: ['a' + (i % 5), 'b' + (i % 13)] },
  };
  const len = Buffer.byteLength(JSON.stringify(d));
  d.data.notes = 'n'.repeat(Math.max(0, 1024 - len - 12));
  return d;
}

async function main() {
  const db = C.dbClient(args.url, { timeoutMs: TIMEOUT * 1000 });
  await db.recreate();

  // --- ingest
  const docBytes = Buffer.byteLength(JSON.stringify(makeDoc(0)));
  let t0 = process.hrtime.bigint();
  for (let b = 0; b < NDOCS; b += BATCH) {
    const docs = [];
    for (let i = b; i < Math.min(NDOCS, b + BATCH); i++) docs.push(makeDoc(i));
    await db.bulkDocs(docs);
  }
  const ingestSec = Number(process.hrtime.bigint() - t0) / 1e9;

  // --- _changes?include_docs=true
  t0 = process.hrtime.bigint();
  const r = await db.expect('GET', '/_changes?include_docs=true', undefined, [200]);
  const body = JSON.parse(r.buf.toString('utf8'));
  const changesSec = Number(process.hrtime.bigint() - t0) / 1e9;
  assert(Array.isArray(body.results), '_changes has no results array');
  assert(body.results.length === NDOCS, '_changes returned ' + body.results.length + ' results, expected ' + NDOCS);
  assert(body.results.every((x) => x.doc && x.doc._id === x.id), '_changes?include_docs=true rows lack docs');

  // --- continuous feed latency
  const waiters = new Map();
  const feed = await C.openContinuous(args.url, (obj, now) => {
    const w = obj && obj.id && waiters.get(obj.id);
    if (w) { waiters.delete(obj.id); w(now); }
  });
  const waitFor = (id, ms) => new Promise((resolve, reject) => {
    const t = setTimeout(() => { waiters.delete(id); reject(new C.AssertionError('no continuous _changes event for ' + id + ' within ' + ms + ' ms')); }, ms);
    waiters.set(id, (now) => { clearTimeout(t); resolve(now); });
  });
  const lat = [];
  try {
    // probe until the feed is live (bounded: 20 probes)
    let live = false;
    for (let p = 0; p < 20 && !live; p++) {
      const id = 'probe-' + p;
      const ev = waitFor(id, 1000);
      await db.expect('PUT', '/' + id, { probe: p }, [201, 202]);
      try { await ev; live = true; } catch (e) { /* retry */ }
    }
    assert(live, 'continuous _changes feed delivered no events for 20 probe writes');
    for (let i = 0; i < NLAT; i++) {
      const id = 'lat-' + pad(i);
      const ev = waitFor(id, 10000);
      const start = process.hrtime.bigint();
      await db.expect('PUT', '/' + id, { n: i, type: 'latency' }, [201, 202]);
      const got = await ev;
      lat.push(Number(got - start) / 1e6);
      if (PAUSE) await C.sleep(PAUSE);
    }
  } finally {
    feed.close();
  }
  lat.sort((a, b) => a - b);
  C.printResult({
    ingest_docs_per_s: Math.round(NDOCS / ingestSec),
    changes_docs_per_s: Math.round(NDOCS / changesSec),
    latency_ms: {
      p50: C.round(C.percentile(lat, 50), 2),
      p99: C.round(C.percentile(lat, 99), 2),
      mean: C.round(lat.reduce((a, b) => a + b, 0) / lat.length, 2),
      max: C.round(lat[lat.length - 1], 2),
    },
    docs: NDOCS, batch: BATCH, doc_bytes: docBytes, latency_writes: NLAT,
    ingest_seconds: C.round(ingestSec, 3), changes_seconds: C.round(changesSec, 3),
  });
}

C.runMain(main, TIMEOUT);
