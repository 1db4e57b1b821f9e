#!/usr/bin/env node
'use strict';
// Times a one-shot PouchDB replication between two remote databases.
//
//   node bench-replicate.js --source URL/db --target URL/db [--selector JSON]
//        [--seed-selector] [--populate N] [--seed 42] [--fresh-target]
//        [--batch-size 500] [--batches-limit 10] [--timeout SEC]
//
// PouchDB.replicate(source, target, {batch_size: 500, batches_limit: 10, selector?})
// with PouchDB's http adapter on both ends (traffic: source _changes/_bulk_get,
// target _revs_diff/_bulk_docs, _local checkpoints on both).
//
// --selector JSON      Mango selector passed to the replicator (source must support
//                      POST _changes?filter=_selector).
// --seed-selector      use the seed's sharing selector for the generated docs
//                      (same one bench-selector.js times; needs --populate or a
//                      source populated with the same --seed).
// --populate N         first DELETE+PUT the source and write N seed-shaped docs
//                      (lib/seed-docs.js, --seed) via _bulk_docs in batches of 1000.
// --fresh-target       DELETE+PUT the target before replicating (otherwise a
//                      target that already has the docs gives docs_written 0).
//
// Output: {"docs_written":..,"seconds":..,"docs_per_s":..,"docs_read":..,
//          "doc_write_failures":..,"expected_matches":..?}

const C = require('./lib/common');
const { assert } = C;
const seedDocs = require('./lib/seed-docs');

const args = C.parseArgs({
  source: 'string', target: 'string', selector: 'json', 'seed-selector': 'bool', populate: 'int', seed: 'int',
  'fresh-target': 'bool', 'batch-size': 'int', 'batches-limit': 'int', timeout: 'int',
});
if (!args.source || !args.target) C.fail('usage: bench-replicate.js --source URL/db --target URL/db [--selector JSON]');
if (args.selector !== undefined && (typeof args.selector !== 'object' || args.selector === null || Array.isArray(args.selector))) C.fail('--selector must be a JSON object');
if (args.selector && args['seed-selector']) C.fail('--selector and --seed-selector are exclusive');
if (args.populate !== undefined && (args.populate < 20 || args.populate > 2000000)) C.fail('--populate must be in 20..2000000');
const TIMEOUT = args.timeout || 900;

async function main() {
  const src = C.dbClient(args.source, { timeoutMs: 120000 });
  const tgt = C.dbClient(args.target, { timeoutMs: 120000 });
  const seed = args.seed === undefined ? 42 : args.seed;
  let selector = args.selector;
  let expected;
  let populateSec;
  if (args.populate !== undefined || args['seed-selector']) {
    const n = args.populate !== undefined ? args.populate : null;
    // without --populate, --seed-selector needs to know n only for ids of collections: they do not depend on n
    const gen = seedDocs.generate(n || 20, { seed });
    if (args['seed-selector']) selector = gen.selector;
    if (n) {
      const t0 = process.hrtime.bigint();
      await src.recreate();
      for (let b = 0; b < gen.docs.length; b += 1000) await src.bulkDocs(gen.docs.slice(b, b + 1000));
      populateSec = Number(process.hrtime.bigint() - t0) / 1e9;
      expected = gen.docs.filter((d) => seedDocs.referenceMatch(d, gen.sharedIds)).length;
    }
  } else {
    await src.expect('GET', '', undefined, [200]);
  }
  if (args['fresh-target']) await tgt.recreate();

  const opts = { batch_size: args['batch-size'] || 500, batches_limit: args['batches-limit'] || 10 };
  if (selector) opts.selector = selector;
  const r = await C.replicate(C.remoteDb(args.source), C.remoteDb(args.target), opts, TIMEOUT);
  const s = C.repStats(r);
  assert(s.status === 'complete', 'replication status ' + s.status);
  assert(s.doc_write_failures === 0 && s.errors === 0, 'replication had failures: ' + JSON.stringify(s));
  if (expected !== undefined && args['fresh-target']) {
    const want = selector ? expected : args.populate;
    assert(s.docs_written === want, 'docs_written ' + s.docs_written + ', expected ' + want);
    const info = await tgt.expect('GET', '', undefined, [200]);
    assert(info.json.doc_count === want, 'target doc_count ' + info.json.doc_count + ', expected ' + want);
  }
  const out = {
    docs_written: s.docs_written,
    seconds: C.round(r.seconds, 3),
    docs_per_s: Math.round(s.docs_written / r.seconds),
    docs_read: s.docs_read,
    doc_write_failures: s.doc_write_failures,
    batch_size: opts.batch_size,
    batches_limit: opts.batches_limit,
    selector: !!selector,
  };
  if (populateSec !== undefined) { out.populated = args.populate; out.populate_seconds = C.round(populateSec, 3); }
  if (expected !== undefined && selector) out.expected_matches = expected;
  C.printResult(out);
}

C.runMain(main, TIMEOUT + 600);
