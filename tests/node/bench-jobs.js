#!/usr/bin/env node
'use strict';
// Cost of many idle continuous replications on one server, and their latency under load.
//
//   node bench-jobs.js --server URL --pid PID --jobs N [--rate 20] [--duration 15] [--idle 10]
//
// Creates N source/target database pairs on the server, measures its RSS, then writes N
// continuous replication documents (source and target as HTTP URLs back to the same server,
// as a job towards a peer would be) into `_replicator`. Once every job has delivered a probe
// write, it measures the RSS again and the CPU used over --idle seconds with nothing to do.
// Then it writes --rate docs per second to random sources for --duration seconds and times
// each from the write's start to its arrival on the target (a longpoll on the target from
// the target's update_seq read before the write, so no arrival can be missed).
// Output: {"jobs":N,"rss_base_mib":..,"rss_jobs_mib":..,"per_job_kib":..,"idle_cpu_pct":..,
//          "latency_ms":{"p50":..,"p99":..,"max":..},"writes":..}

const fs = require('fs');
const C = require('./lib/common');

const args = C.parseArgs({ server: 'string', pid: 'int', jobs: 'int', rate: 'int', duration: 'int', idle: 'int' });
if (!args.server || !args.pid || !args.jobs) C.fail('usage: bench-jobs.js --server URL --pid PID --jobs N');
const N = args.jobs;
const RATE = args.rate || 20;
const DURATION = args.duration || 15;
const IDLE = args.idle || 10;
const server = args.server.replace(/\/$/, '');
const srv = C.dbClient(server, { timeoutMs: 60000, root: true });
const name = (kind, i) => `jobs${N}-${kind}-${String(i).padStart(5, '0')}`;

function rssKib() {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${args.pid}/status`, 'utf8'));
  return Number(m[1]);
}
function cpuTicks() {
  // Fields after the command name: utime and stime are the 14th and 15th of the line.
  const stat = fs.readFileSync(`/proc/${args.pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
}

async function waitDelivered(ids, probe, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let pending = ids.slice();
  while (pending.length) {
    C.assert(Date.now() < deadline, `${pending.length} of ${ids.length} jobs delivered no ${probe} write in ${timeoutMs} ms`);
    const still = [];
    await C.pool(pending, 32, async (i) => {
      const r = await srv.req('GET', `/${name('dst', i)}/${probe}`);
      if (r.status !== 200) still.push(i);
    });
    pending = still;
    if (pending.length) await C.sleep(500);
  }
}

async function main() {
  const ids = [...Array(N).keys()];
  await C.pool(ids, 16, async (i) => {
    await srv.expect('PUT', '/' + name('src', i), undefined, [201, 202, 412]);
    await srv.expect('PUT', '/' + name('dst', i), undefined, [201, 202, 412]);
  });
  await C.sleep(2000);
  const rssBase = rssKib();

  const docs = ids.map((i) => ({
    _id: name('rep', i),
    source: `${server}/${name('src', i)}`,
    target: `${server}/${name('dst', i)}`,
    continuous: true,
  }));
  for (let k = 0; k < docs.length; k += 500) {
    await srv.expect('POST', '/_replicator/_bulk_docs', { docs: docs.slice(k, k + 500) }, [201]);
  }
  await C.pool(ids, 32, (i) => srv.expect('PUT', `/${name('src', i)}/probe`, { probe: true }, [201, 202]));
  await waitDelivered(ids, 'probe', 300000);

  await C.sleep(5000);
  const rssJobs = rssKib();
  const t0 = cpuTicks();
  await C.sleep(IDLE * 1000);
  const idleTicks = cpuTicks() - t0;

  const lat = [];
  const inflight = [];
  const total = RATE * DURATION;
  for (let k = 0; k < total; k++) {
    const i = Math.floor(Math.random() * N);
    inflight.push((async () => {
      const db = name('dst', i);
      const seq = (await srv.expect('GET', '/' + db, undefined, [200])).json.update_seq;
      const enc = (v) => encodeURIComponent(typeof v === 'string' ? v : JSON.stringify(v));
      // Another load write may land on the same target first: follow on until ours arrives.
      const arrival = (async () => {
        let since = seq;
        for (;;) {
          const r = await srv.expect('GET', `/${db}/_changes?feed=longpoll&timeout=20000&since=${enc(since)}`, undefined, [200]);
          if (r.json.results.some((c) => c.id === `load-${k}`)) return;
          C.assert(r.json.results.length > 0, `load-${k} did not arrive on ${db} within 20 s`);
          since = r.json.last_seq;
        }
      })();
      const start = process.hrtime.bigint();
      await srv.expect('PUT', `/${name('src', i)}/load-${k}`, { k }, [201, 202]);
      await arrival;
      lat.push(Number(process.hrtime.bigint() - start) / 1e6);
    })());
    await C.sleep(1000 / RATE);
  }
  await Promise.all(inflight);
  lat.sort((a, b) => a - b);
  C.printResult({
    jobs: N,
    rss_base_mib: C.round(rssBase / 1024, 1),
    rss_jobs_mib: C.round(rssJobs / 1024, 1),
    per_job_kib: C.round((rssJobs - rssBase) / N, 0),
    idle_cpu_pct: C.round((idleTicks / IDLE), 1), // ticks are 1/100 s: ticks per second = percent of a core
    latency_ms: { p50: C.round(C.percentile(lat, 50), 1), p99: C.round(C.percentile(lat, 99), 1), max: C.round(lat[lat.length - 1], 1) },
    writes: lat.length,
  });
}

C.runMain(main, 1200);
