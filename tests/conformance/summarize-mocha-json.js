#!/usr/bin/env node
'use strict';
// Summarize the per-file mocha json reports written by run-pouchdb-suite.sh.
//
// Usage: node summarize-mocha-json.js RESULTS_DIR
//
// Reads RESULTS_DIR/{integration,find}/index.tsv (file, exit code, seconds) and, per file,
// NAME.json (the run) and NAME.planned (a --dry-run: how many tests the file defines).
// Prints the totals per suite, the files that did not finish cleanly, and every failing test
// with the first line of its error. Writes the same data as RESULTS_DIR/results.json.

const fs = require('fs');
const path = require('path');

const resultsDir = process.argv[2];
if (!resultsDir) {
  console.error('usage: summarize-mocha-json.js RESULTS_DIR');
  process.exit(2);
}

const SUITES = ['integration', 'find'];
const HOOK = /^"(before|after) (each|all)" hook/;

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    return null;
  }
}

function firstLine(err) {
  let text = err && (err.message || err.stack);
  if (!text) text = err && Object.keys(err).length ? JSON.stringify(err) : '(no error message)';
  return text.split('\n').find((l) => l.trim() !== '') || '';
}

function reportName(file) {
  return file.replace(/^tests\//, '').replace(/\//g, '_').replace(/\.js$/, '');
}

const summary = { runInfo: null, suites: {} };
try {
  summary.runInfo = fs.readFileSync(path.join(resultsDir, 'run-info.txt'), 'utf8').trim();
} catch (e) { /* optional */ }

for (const suite of SUITES) {
  const indexFile = path.join(resultsDir, suite, 'index.tsv');
  if (!fs.existsSync(indexFile)) continue;
  const totals = { files: 0, passing: 0, pending: 0, failing: 0, hookFailures: 0, notRun: 0, seconds: 0 };
  const files = [];
  const failures = [];
  const lines = fs.readFileSync(indexFile, 'utf8').split('\n').filter(Boolean);
  for (const line of lines) {
    const [file, rc, seconds] = line.split('\t');
    const base = path.join(resultsDir, suite, reportName(file));
    const run = readJson(base + '.json');
    const planned = readJson(base + '.planned');
    const plannedTests = planned ? planned.stats.tests : null;
    const entry = { file, exitCode: Number(rc), seconds: Number(seconds), planned: plannedTests };
    totals.files += 1;
    totals.seconds += entry.seconds;
    if (!run) {
      entry.aborted = true;
      entry.notRun = plannedTests || 0;
      totals.notRun += entry.notRun;
      files.push(entry);
      continue;
    }
    const testFailures = run.failures.filter((f) => !HOOK.test(f.title));
    entry.passing = run.stats.passes;
    entry.pending = run.stats.pending;
    entry.failing = run.stats.failures;
    entry.hookFailures = run.failures.length - testFailures.length;
    entry.notRun = plannedTests === null ? 0
      : Math.max(0, plannedTests - (entry.passing + entry.pending + testFailures.length));
    totals.passing += entry.passing;
    totals.pending += entry.pending;
    totals.failing += entry.failing;
    totals.hookFailures += entry.hookFailures;
    totals.notRun += entry.notRun;
    files.push(entry);
    for (const f of run.failures) {
      failures.push({ file, title: f.fullTitle, error: firstLine(f.err) });
    }
  }
  summary.suites[suite] = { totals, files, failures };
}

fs.writeFileSync(path.join(resultsDir, 'results.json'), JSON.stringify(summary, null, 2) + '\n');

// ---- text report ----
const out = [];
const pad = (s, n) => String(s).padEnd(n);
const lpad = (s, n) => String(s).padStart(n);
if (summary.runInfo) out.push(summary.runInfo, '');
out.push('TOTALS');
out.push(`${pad('suite', 12)}${lpad('files', 6)}${lpad('passing', 9)}${lpad('pending', 9)}${lpad('failing', 9)}` +
  `${lpad('(hooks)', 9)}${lpad('not run', 9)}${lpad('seconds', 9)}`);
for (const [suite, { totals: t }] of Object.entries(summary.suites)) {
  out.push(`${pad(suite, 12)}${lpad(t.files, 6)}${lpad(t.passing, 9)}${lpad(t.pending, 9)}${lpad(t.failing, 9)}` +
    `${lpad(t.hookFailures, 9)}${lpad(t.notRun, 9)}${lpad(t.seconds, 9)}`);
}
out.push('("failing" is mocha\'s count and includes the failed hooks shown under "(hooks)"; "not run" are');
out.push(' tests a file defines that never ran: after a failed hook, or in a file killed or crashed.)');

for (const [suite, { files, failures }] of Object.entries(summary.suites)) {
  const troubled = files.filter((f) => f.aborted || f.notRun > 0);
  if (troubled.length) {
    out.push('', `FILES THAT DID NOT RUN ALL THEIR TESTS (${suite})`);
    for (const f of troubled) {
      const why = f.aborted ? `no report, exit code ${f.exitCode}${f.exitCode === 124 ? ' (killed: too slow)' : ''}`
        : `${f.notRun} of ${f.planned} tests not run`;
      out.push(`  ${f.file}: ${why}`);
    }
  }
  out.push('', `FAILING (${suite}): ${failures.length}`);
  let last = null;
  for (const f of failures) {
    if (f.file !== last) {
      out.push(`  ${f.file}`);
      last = f.file;
    }
    out.push(`    - ${f.title}`);
    out.push(`        ${f.error}`);
  }
}
console.log(out.join('\n'));
