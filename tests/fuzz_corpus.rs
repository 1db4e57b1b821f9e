//! The fuzz targets (`settee::fuzz`) on their corpus, on every crash fuzzing ever found
//! (`fuzz/regressions/<target>/`, each a regression test from the day it is added), and on a
//! few thousand deterministic mutations of the corpus (bytes flipped, cut, repeated, spliced):
//! the smoke run of `make fuzz` inside `make test`, without AFL++'s instrumentation.

use std::path::Path;

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            (
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A small deterministic generator (xorshift), so a failure names a reproducible input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.truncate(rng.below(v.len() + 1)),
            2 if !v.is_empty() => {
                let (a, b) = (rng.below(v.len()), rng.below(v.len()));
                let (a, b) = (a.min(b), a.max(b));
                let chunk = v[a..b].to_vec();
                let at = rng.below(v.len());
                v.splice(
                    at..at,
                    chunk
                        .iter()
                        .cycle()
                        .take(chunk.len() * (1 + rng.below(8)))
                        .copied(),
                );
            }
            3 if !other.is_empty() => {
                let at = rng.below(v.len() + 1);
                let from = rng.below(other.len());
                v.splice(at..at, other[from..].iter().copied());
            }
            4 => {
                let at = rng.below(v.len() + 1);
                let tokens: [&[u8]; 8] = [
                    b"{", b"}", b"[", b"]", b"\"$", b"null", b"\\u0000", b"1e999",
                ];
                let t = tokens[rng.below(tokens.len())];
                v.splice(at..at, t.iter().copied());
            }
            _ => {
                if !v.is_empty() {
                    let i = rng.below(v.len());
                    v[i] = rng.next() as u8;
                }
            }
        }
    }
    v
}

#[test]
fn every_target_survives_its_corpus_regressions_and_mutations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in settee::fuzz::TARGETS {
        let corpus = files(&root.join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} has seeds");
        let regressions = files(&root.join("regressions").join(name));
        for (path, input) in corpus.iter().chain(&regressions) {
            eprintln!("{name}: {path}");
            target(input);
        }
        let mut rng = Rng(0x5e77_ee00 ^ name.len() as u64);
        for round in 0..1500 {
            let a = &corpus[rng.below(corpus.len())].1;
            let b = &corpus[rng.below(corpus.len())].1;
            let input = mutate(&mut rng, a, b);
            let ok = std::panic::catch_unwind(|| target(&input));
            assert!(
                ok.is_ok(),
                "{name} panicked on mutation {round}: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}
