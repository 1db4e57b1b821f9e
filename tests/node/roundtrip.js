#!/usr/bin/env node
'use strict';
// Interop proof: source --(PouchDB replicator)--> via --(PouchDB replicator)--> target,
// then every doc's full leaf set (open_revs=all, revs=true) must be identical on
// source and target; a second pass of both replications must write nothing.
//
//   node roundtrip.js --source URL/db --via memory|URL/db --target URL/db [--populate]
//                     [--timeout SEC]
//
// --populate: (re)create source, via (if a URL) and target, then write to the
// source with plain HTTP: 1000 docs (~200 B, type collection/item/other), 100
// updates, 50 deletions (half with a body), one conflict (second branch off rev 1
// via _bulk_docs new_edits:false + _revisions), one doc with an inline base64
// text/plain attachment (4 KiB).
// Without --populate nothing is deleted or created on the source; via/target are
// created if missing.
//
// Output (one JSON line): {"docs":N,"leaf_revs":M,"deleted_leaves":D,"conflicted_docs":C,
//   "first":{"leg1":{stats},"leg2":{stats}},"second":{...}}

const crypto = require('crypto');
const C = require('./lib/common');
const { assert } = C;

const args = C.parseArgs({ source: 'string', via: 'string', target: 'string', populate: 'bool', timeout: 'int' });
if (!args.source || !args.via || !args.target) C.fail('usage: roundtrip.js --source URL/db --via memory|URL/db --target URL/db [--populate]');
const TIMEOUT = args.timeout || 300;

const NDOCS = 1000;
const TYPES = ['collection', 'item', 'other'];
const ATT_NAME = 'note.txt';
const pad = (i) => String(i).padStart(4, '0');
const hex32 = (s) => crypto.createHash('md5').update(s).digest('hex');

function makeDoc(i) {
  const doc = {
    _id: 'rt-' + pad(i),
    type: TYPES[i % 3],
    n: i,
    title: 'Roundtrip document ' + i,
    tags: ['t' + (i % 7), 't' + (i % 11)],
    nested: { even: i % 2 === 0, ratio: i / 8, unicode: 'caf\u00e9 \u2603' },
  };
  // pad to ~200 bytes of JSON
  const len = JSON.stringify(doc).length;
  doc.filler = 'x'.repeat(Math.max(0, 200 - len - 12));
  return doc;
}

async function populate(src) {
  await src.recreate();
  const docs = [];
  for (let i = 0; i < NDOCS; i++) docs.push(makeDoc(i));
  const revs = new Map();
  for (let b = 0; b < docs.length; b += 250) {
    const res = await src.bulkDocs(docs.slice(b, b + 250));
    res.forEach((r) => revs.set(r.id, r.rev));
  }
  // 100 updates: i % 10 == 0
  const rev1 = new Map(revs);
  const upd = [];
  for (let i = 0; i < NDOCS; i += 10) {
    const d = makeDoc(i);
    d._rev = revs.get(d._id);
    d.updated = true;
    d.title += ' (updated)';
    upd.push(d);
  }
  (await src.bulkDocs(upd)).forEach((r) => revs.set(r.id, r.rev));
  // 50 deletions: i % 20 == 5; every other one keeps a body on the tombstone
  const del = [];
  for (let i = 5; i < NDOCS; i += 20) {
    const id = 'rt-' + pad(i);
    const t = { _id: id, _rev: revs.get(id), _deleted: true };
    if (i % 40 === 5) t.deleted_reason = 'roundtrip test ' + i;
    del.push(t);
  }
  (await src.bulkDocs(del)).forEach((r) => revs.set(r.id, r.rev));
  // one conflict: rt-0000 is at 2-x (updated); add a second branch 2-y off 1-z
  const cid = 'rt-0000';
  const r1 = rev1.get(cid);
  const branchHash = hex32('roundtrip-branch-' + r1);
  const branch = makeDoc(0);
  branch._rev = '2-' + branchHash;
  branch._revisions = { start: 2, ids: [branchHash, r1.split('-')[1]] };
  branch.branch = 'b';
  await src.bulkDocs([branch], false);
  const leafCheck = await src.expect('GET', '/' + cid + '?open_revs=all', undefined, [200]);
  assert(Array.isArray(leafCheck.json) && leafCheck.json.filter((x) => x.ok).length === 2,
    'source should have 2 leaves for ' + cid + ' after new_edits:false, got ' + JSON.stringify(leafCheck.json).slice(0, 300));
  // one doc with an inline attachment
  const text = Array.from({ length: 128 }, (_, k) => 'line ' + String(k).padStart(3, '0') + ': the quick brown fox\n').join('');
  const attDoc = { _id: 'rt-attach', type: 'item', _attachments: { [ATT_NAME]: { content_type: 'text/plain', data: Buffer.from(text).toString('base64') } } };
  await src.expect('PUT', '/rt-attach', attDoc, [201, 202]);
  return { attBytes: Buffer.from(text) };
}

async function allIds(db) {
  const ids = new Set();
  const ad = await db.expect('GET', '/_all_docs', undefined, [200]);
  assert(Array.isArray(ad.json && ad.json.rows), '_all_docs has no rows array');
  ad.json.rows.forEach((r) => ids.add(r.id));
  const ch = await db.expect('GET', '/_changes?style=all_docs', undefined, [200]);
  assert(Array.isArray(ch.json && ch.json.results), '_changes has no results array');
  let deleted = 0;
  ch.json.results.forEach((r) => { if (r.deleted) deleted++; ids.add(r.id); });
  return { ids: [...ids].sort(), deleted };
}

async function leafSet(db, id) {
  const r = await db.expect('GET', '/' + encodeURIComponent(id) + '?open_revs=all&revs=true', undefined, [200]);
  assert(Array.isArray(r.json), 'open_revs=all for ' + id + ' on ' + db.info.url + ' did not return a JSON array (content-type ' + r.headers.get('content-type') + ')');
  const m = new Map();
  for (const e of r.json) {
    if (e.missing) { m.set('missing:' + e.missing, null); continue; }
    assert(e.ok && e.ok._rev, 'open_revs entry without ok/_rev for ' + id + ': ' + JSON.stringify(e).slice(0, 200));
    assert(e.ok._revisions && Array.isArray(e.ok._revisions.ids), 'no _revisions for ' + id + ' ' + e.ok._rev);
    m.set(e.ok._rev, e.ok);
  }
  return m;
}

async function verify(src, tgt, populated) {
  const { ids } = await allIds(src);
  assert(ids.length > 0, 'source has no documents');
  let leaves = 0, deletedLeaves = 0, conflicted = 0, attachments = 0;
  await C.pool(ids, 8, async (id) => {
    const [a, b] = await Promise.all([leafSet(src, id), leafSet(tgt, id)]);
    const ra = [...a.keys()].sort(), rb = [...b.keys()].sort();
    assert(C.canonical(ra) === C.canonical(rb), 'leaf revs differ for ' + id + ': source ' + JSON.stringify(ra) + ' target ' + JSON.stringify(rb));
    leaves += ra.length;
    if (ra.length > 1) conflicted++;
    for (const rev of ra) {
      const da = a.get(rev), db = b.get(rev);
      if (da === null) continue;
      if (da._deleted) deletedLeaves++;
      assert(C.canonical(da._revisions) === C.canonical(db._revisions),
        '_revisions differ for ' + id + ' ' + rev + ': source ' + JSON.stringify(da._revisions) + ' target ' + JSON.stringify(db._revisions));
      if (da._attachments || db._attachments) {
        const na = Object.keys(da._attachments || {}).sort(), nb = Object.keys(db._attachments || {}).sort();
        assert(C.canonical(na) === C.canonical(nb), 'attachment names differ for ' + id + ' ' + rev);
        for (const name of na) {
          const sa = da._attachments[name], sb = db._attachments[name];
          for (const f of ['digest', 'length', 'content_type']) {
            assert(sa[f] === sb[f], 'attachment ' + id + '/' + name + ' ' + f + ' differs: source ' + sa[f] + ' target ' + sb[f]);
          }
          const [ba, bb] = await Promise.all([
            src.expect('GET', '/' + encodeURIComponent(id) + '/' + encodeURIComponent(name) + '?rev=' + rev, undefined, [200], { Accept: '*/*' }),
            tgt.expect('GET', '/' + encodeURIComponent(id) + '/' + encodeURIComponent(name) + '?rev=' + rev, undefined, [200], { Accept: '*/*' }),
          ]);
          assert(ba.buf.equals(bb.buf), 'attachment bytes differ for ' + id + '/' + name);
          assert(C.md5Digest(bb.buf) === sb.digest, 'attachment digest ' + sb.digest + ' does not match md5 of bytes ' + C.md5Digest(bb.buf));
          if (populated && id === 'rt-attach') assert(bb.buf.equals(populated.attBytes), 'attachment bytes differ from what was written');
          attachments++;
        }
      }
      // bodies: compare everything except attachment stubs' volatile fields (revpos is compared too)
      assert(C.canonical(da) === C.canonical(db), 'body differs for ' + id + ' ' + rev + ':\n source ' + C.canonical(da).slice(0, 600) + '\n target ' + C.canonical(db).slice(0, 600));
    }
  });
  const [ia, ib] = await Promise.all([src.expect('GET', '', undefined, [200]), tgt.expect('GET', '', undefined, [200])]);
  assert(ia.json.doc_count === ib.json.doc_count, 'doc_count differs: source ' + ia.json.doc_count + ' target ' + ib.json.doc_count);
  assert(ia.json.doc_del_count === ib.json.doc_del_count, 'doc_del_count differs: source ' + ia.json.doc_del_count + ' target ' + ib.json.doc_del_count);
  return { docs: ids.length, leaves, deletedLeaves, conflicted, attachments };
}

async function main() {
  const P = C.PouchDB();
  const src = C.dbClient(args.source);
  const tgt = C.dbClient(args.target);
  const viaIsMemory = args.via === 'memory';
  const viaHttp = viaIsMemory ? null : C.dbClient(args.via);
  let populated = null;
  if (args.populate) {
    populated = await populate(src);
    await tgt.recreate();
    if (viaHttp) await viaHttp.recreate();
  } else {
    await src.expect('GET', '', undefined, [200]);
    await tgt.ensure();
    if (viaHttp) await viaHttp.ensure();
  }
  const via = viaIsMemory ? new P('roundtrip-via-' + process.pid + '-' + Date.now(), { adapter: 'memory' }) : null;
  const viaTarget = () => (viaIsMemory ? via : C.remoteDb(args.via));

  async function pass(label) {
    const leg1 = await C.replicate(C.remoteDb(args.source), viaTarget(), {}, TIMEOUT);
    const leg2 = await C.replicate(viaTarget(), C.remoteDb(args.target), {}, TIMEOUT);
    const s = { leg1: C.repStats(leg1), leg2: C.repStats(leg2) };
    for (const k of ['leg1', 'leg2']) {
      assert(s[k].status === 'complete', label + ' ' + k + ' replication status ' + s[k].status);
      assert(s[k].doc_write_failures === 0 && s[k].errors === 0, label + ' ' + k + ' had write failures: ' + JSON.stringify(s[k]));
    }
    return s;
  }

  const first = await pass('first');
  const v = await verify(src, tgt, populated);
  if (args.populate) {
    assert(v.docs === NDOCS + 1, 'expected ' + (NDOCS + 1) + ' doc ids, got ' + v.docs);
    assert(v.conflicted === 1, 'expected 1 conflicted doc, got ' + v.conflicted);
    assert(v.deletedLeaves === 50, 'expected 50 deleted leaves, got ' + v.deletedLeaves);
    assert(v.attachments === 1, 'expected 1 attachment, got ' + v.attachments);
    assert(v.leaves === NDOCS + 2, 'expected ' + (NDOCS + 2) + ' leaf revs, got ' + v.leaves);
    assert(first.leg1.docs_written > 0 && first.leg2.docs_written > 0, 'first pass wrote nothing');
  }
  const second = await pass('second');
  assert(second.leg1.docs_written === 0, 'second pass leg1 (source->via) wrote ' + second.leg1.docs_written + ' docs, expected 0');
  assert(second.leg2.docs_written === 0, 'second pass leg2 (via->target) wrote ' + second.leg2.docs_written + ' docs, expected 0');
  if (via) await via.destroy();
  C.printResult({
    docs: v.docs, leaf_revs: v.leaves, deleted_leaves: v.deletedLeaves, conflicted_docs: v.conflicted,
    attachments: v.attachments, via: viaIsMemory ? 'memory' : 'http', first, second,
  });
}

C.runMain(main, TIMEOUT * 3);
