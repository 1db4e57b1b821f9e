//! Selector evaluations/s over the documents and selector that `tests/node/bench-selector.js
//! --dump N` writes (NDJSON docs, then a `{"selector": …}` line), so settee's engine and
//! pouchdb-selector-core are timed on identical input. Run by `benches/selector.sh`.
//! Prints one JSON line: {"evals_per_s", "matched", "docs"}.

use std::io::BufRead;
use std::time::Instant;

use serde_json::Value;
use settee::mango::Selector;

fn main() {
    let path = std::env::var("SELECTOR_DOCS").expect("SELECTOR_DOCS=path to the NDJSON dump");
    let file = std::fs::File::open(&path).expect("open dump");
    let mut docs: Vec<Value> = std::io::BufReader::new(file)
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("json line"))
        .collect();
    let last = docs.pop().expect("selector line");
    let selector = Selector::parse(&last["selector"]).expect("selector parses");
    let rounds = 5;
    let mut matched = 0;
    let t = Instant::now();
    for _ in 0..rounds {
        matched = docs.iter().filter(|d| selector.matches(*d)).count();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{{\"evals_per_s\":{:.0},\"matched\":{matched},\"docs\":{}}}",
        (docs.len() * rounds) as f64 / secs,
        docs.len()
    );
}
