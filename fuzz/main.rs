//! The AFL++ harness: `settee-fuzz TARGET` runs one of `settee::fuzz::TARGETS` on each input
//! AFL++ gives it. Built only by `make fuzz` (`cargo afl build --features fuzz`).

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some((_, target)) = settee::fuzz::TARGETS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = settee::fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: settee-fuzz TARGET (one of {})", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| {
        target(data);
    });
}
