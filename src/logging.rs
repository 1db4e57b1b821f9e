//! Logging setup: `tracing` to stderr, level from `RUST_LOG`, quiet (warnings only) by default.
//! Colours only when stderr is a terminal and `NO_COLOR` is unset, so log files and
//! journals get plain text.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .try_init();
}

/// Whether log lines may carry ANSI colour codes.
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
