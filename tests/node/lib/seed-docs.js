'use strict';
// Deterministic generator of documents shaped like the "share your data" seed
// (types collection / item / item_image / image; data.collection_id,
// data._item_collection_id, data._item_collection_ids) plus the seed's
// $or / $in / $elemMatch sharing selector. Integer-only PRNG so that another
// language (the Rust benchmark) can reproduce the exact same docs; see README.md
// ("Seed doc generator") for the normative description.

const crypto = require('crypto');

// mulberry32: 32-bit state, returns a uint32 per call.
function mulberry32(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1) >>> 0;
    t = (t ^ ((t + Math.imul(t ^ (t >>> 7), t | 61)) >>> 0)) >>> 0;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const hex8 = (u) => u.toString(16).padStart(8, '0');
const pad = (i, w) => String(i).padStart(w, '0');

const DEFAULTS = { seed: 42, collections: 20, shared: 2 };

// Returns { docs, collectionIds, sharedIds, selector }.
// n = total number of docs (>= collections).
function generate(n, opts) {
  opts = Object.assign({}, DEFAULTS, opts || {});
  const { collections: NC, shared: NS } = opts;
  if (n < NC) throw new Error('n must be >= number of collections (' + NC + ')');
  const next = mulberry32(opts.seed);
  const below = (m) => next() % m;

  const collectionIds = [];
  for (let k = 0; k < NC; k++) collectionIds.push(hex8(next()) + '-' + pad(k, 4));

  const docs = new Array(n);
  for (let k = 0; k < NC; k++) {
    docs[k] = {
      _id: 'collection-' + collectionIds[k],
      type: 'collection',
      data: { name: 'Collection ' + k, reference_number: pad(k, 4), created_at: 1700000000000 + k },
    };
  }
  for (let i = NC; i < n; i++) {
    const r = below(100);
    const idSuffix = pad(i, 8) + '-' + hex8(next());
    const created = 1700000000000 + i * 1000;
    let doc;
    if (r < 45) {
      doc = {
        _id: 'item-' + idSuffix,
        type: 'item',
        data: {
          name: 'Item ' + i,
          collection_id: collectionIds[below(NC)],
          individual_asset_reference: pad(below(100000), 5),
          notes: 'n'.repeat(below(200)),
          created_at: created,
        },
      };
    } else if (r < 70) {
      doc = {
        _id: 'item_image-' + idSuffix,
        type: 'item_image',
        data: {
          item_id: 'item-' + pad(below(i), 8),
          image_id: 'image-' + pad(below(i), 8),
          _item_collection_id: collectionIds[below(NC)],
          created_at: created,
        },
      };
    } else {
      const size = below(5000000);
      const cnt = 1 + below(2);
      const ids = [];
      for (let j = 0; j < cnt; j++) ids.push(collectionIds[below(NC)]);
      doc = {
        _id: 'image-' + idSuffix,
        type: 'image',
        data: {
          size,
          _item_collection_ids: ids,
          created_at: created,
        },
      };
    }
    docs[i] = doc;
  }

  const sharedIds = collectionIds.slice(0, NS);
  const selector = {
    $or: [
      { type: 'collection', _id: { $in: sharedIds.map((c) => 'collection-' + c) } },
      { type: 'item', 'data.collection_id': { $in: sharedIds.slice() } },
      { type: 'item_image', 'data._item_collection_id': { $in: sharedIds.slice() } },
      { type: 'image', 'data._item_collection_ids': { $elemMatch: { $in: sharedIds.slice() } } },
    ],
  };
  return { docs, collectionIds, sharedIds, selector };
}

// Plain-JS reference matcher for exactly the selector above (cross-check).
function referenceMatch(doc, sharedIds) {
  const s = new Set(sharedIds);
  switch (doc.type) {
    case 'collection': return s.has(doc._id.slice('collection-'.length)) && doc._id.startsWith('collection-');
    case 'item': return s.has(doc.data.collection_id);
    case 'item_image': return s.has(doc.data._item_collection_id);
    case 'image': return doc.data._item_collection_ids.some((c) => s.has(c));
    default: return false;
  }
}

// sha256 over JSON.stringify(doc) + "\n" for every doc, in order.
function digest(docs) {
  const h = crypto.createHash('sha256');
  for (const d of docs) h.update(JSON.stringify(d) + '\n');
  return h.digest('hex');
}

module.exports = { mulberry32, generate, referenceMatch, digest, DEFAULTS };
