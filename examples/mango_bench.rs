//! Throughput of `Selector::matches` on a replication-filter workload.
//!
//! `cargo run --release --example mango_bench [-- --dump docs.json]`
//! With `--dump`, the generated documents are written out so the same workload can be timed
//! with another implementation (e.g. pouchdb-selector-core's `matchesSelector`).

use serde_json::{json, Value};
use settee::mango::Selector;
use std::time::Instant;

fn docs(n: usize) -> Vec<Value> {
    let mut seed: u64 = 42;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let types = [
        "collection",
        "item",
        "item_image",
        "image",
        "config",
        "post",
    ];
    (0..n)
        .map(|i| {
            let t = types[next() % types.len()];
            let coll = format!("c{}", next() % 8);
            json!({
                "_id": format!("{t}-{i:06}"),
                "_rev": format!("{}-{:032x}", 1 + next() % 5, next()),
                "type": t,
                "data": {
                    "name": format!("Thing number {i}"),
                    "collection_id": coll,
                    "_item_collection_id": coll,
                    "_item_collection_ids": [format!("c{}", next() % 8), format!("c{}", next() % 8)],
                    "updated_at": 1_700_000_000 + next() % 1_000_000,
                    "notes": "Lorem ipsum dolor sit amet, consectetur adipiscing elit",
                    "tags": ["a", "b", "c"],
                }
            })
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = std::env::var("DOCS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let docs = docs(n);
    if let Some(i) = args.iter().position(|a| a == "--dump") {
        let path = args.get(i + 1).expect("--dump PATH");
        std::fs::write(path, serde_json::to_vec(&docs).expect("json")).expect("write");
    }
    let selectors = [
        ("type eq", json!({"type": "item"})),
        (
            "or of types",
            json!({"$or": [{"type": "collection"}, {"type": "item"}]}),
        ),
        (
            "sharing guide",
            json!({"$or": [
                {"type": "collection", "_id": {"$in": ["collection-c1", "collection-c2"]}},
                {"type": "item", "data.collection_id": {"$in": ["c1", "c2"]}},
                {"type": "item_image", "data._item_collection_id": {"$in": ["c1", "c2"]}},
                {"type": "image", "data._item_collection_ids": {"$elemMatch": {"$in": ["c1", "c2"]}}}
            ]}),
        ),
        (
            "one branch",
            json!({"type": "item", "data.collection_id": {"$in": ["c1", "c2"]}}),
        ),
        ("nested eq", json!({"data.collection_id": "c1"})),
        ("regex only", json!({"data.name": {"$regex": "number 1"}})),
        (
            "gte only",
            json!({"data.updated_at": {"$gte": 1_700_500_000}}),
        ),
        (
            "range + regex",
            json!({"data.updated_at": {"$gte": 1_700_500_000}, "data.name": {"$regex": "number 1"}}),
        ),
    ];
    for (name, s) in &selectors {
        let sel = Selector::parse(s).expect("selector");
        let rounds = (500_000 / docs.len()).max(1);
        let t = Instant::now();
        let mut hits = 0usize;
        for _ in 0..rounds {
            for d in &docs {
                hits += sel.matches(d) as usize;
            }
        }
        let el = t.elapsed();
        let per = el.as_nanos() as f64 / (rounds * docs.len()) as f64;
        println!(
            "{name:>14}: {per:8.1} ns/doc  ({:.2} M docs/s, {} hits/round)",
            1e3 / per,
            hits / rounds
        );
    }
}
