#!/usr/bin/env node
'use strict';
// Times pouchdb-selector-core's matchesSelector over in-memory seed-shaped docs.
//
//   node bench-selector.js [--docs 200000] [--seed 42] [--rounds 1] [--dump N]
//
// matchesSelector(doc, selector) re-massages the selector on every call, which
// is exactly what PouchDB's replicator does per change when given a selector
// (pouchdb-changes-filter). "evals_per_s" measures that. "premassaged_evals_per_s"
// massages once and calls rowFilter(doc, massaged, Object.keys(massaged)), i.e.
// the pure matching cost. The matched count is cross-checked against a
// hand-written reference matcher.
//
// --dump N prints the first N generated docs (NDJSON) plus the selector and exits,
// for cross-checking another implementation of the generator.
//
// Output: {"evals_per_s":..,"matched":..,"docs":..,"premassaged_evals_per_s":..,
//          "match_fraction":..,"by_type":{..},"docs_sha256":"..","selector":{..}}

const C = require('./lib/common');
const { assert } = C;
const seedDocs = require('./lib/seed-docs');
const sc = require('pouchdb-selector-core');

const args = C.parseArgs({ docs: 'int', seed: 'int', rounds: 'int', dump: 'int', timeout: 'int' });
const N = args.docs === undefined ? 200000 : args.docs;
const ROUNDS = args.rounds || 1;
if (N < 20 || N > 5000000) C.fail('--docs must be in 20..5000000');
if (ROUNDS < 1 || ROUNDS > 100) C.fail('--rounds must be in 1..100');

function main() {
  const t0 = process.hrtime.bigint();
  const gen = seedDocs.generate(N, { seed: args.seed === undefined ? 42 : args.seed });
  const genSec = Number(process.hrtime.bigint() - t0) / 1e9;
  if (args.dump !== undefined) {
    for (const d of gen.docs.slice(0, args.dump)) process.stdout.write(JSON.stringify(d) + '\n');
    process.stdout.write(JSON.stringify({ selector: gen.selector }) + '\n');
    return;
  }
  const { docs, selector, sharedIds } = gen;

  let expected = 0;
  const byType = {};
  for (const d of docs) {
    const m = seedDocs.referenceMatch(d, sharedIds);
    byType[d.type] = byType[d.type] || { docs: 0, matched: 0 };
    byType[d.type].docs++;
    if (m) { expected++; byType[d.type].matched++; }
  }

  // matchesSelector (massage per call, as the replicator does)
  let matched = 0;
  let t = process.hrtime.bigint();
  for (let r = 0; r < ROUNDS; r++) {
    matched = 0;
    for (let i = 0; i < docs.length; i++) if (sc.matchesSelector(docs[i], selector)) matched++;
  }
  const sec = Number(process.hrtime.bigint() - t) / 1e9;
  assert(matched === expected, 'matchesSelector matched ' + matched + ' docs, reference matcher ' + expected);

  // pre-massaged
  const massaged = sc.massageSelector(selector);
  const fields = Object.keys(massaged);
  let matched2 = 0;
  t = process.hrtime.bigint();
  for (let r = 0; r < ROUNDS; r++) {
    matched2 = 0;
    for (let i = 0; i < docs.length; i++) if (sc.rowFilter(docs[i], massaged, fields)) matched2++;
  }
  const sec2 = Number(process.hrtime.bigint() - t) / 1e9;
  assert(matched2 === expected, 'rowFilter matched ' + matched2 + ' docs, reference matcher ' + expected);

  C.printResult({
    evals_per_s: Math.round((N * ROUNDS) / sec),
    matched,
    docs: N,
    premassaged_evals_per_s: Math.round((N * ROUNDS) / sec2),
    match_fraction: C.round(matched / N, 4),
    rounds: ROUNDS,
    generate_seconds: C.round(genSec, 3),
    by_type: byType,
    docs_sha256: seedDocs.digest(docs),
    selector,
  });
}

C.runMain(main, args.timeout || 600);
