//! How commands speak: lines on stdout that end quietly when the reader goes away (`settee
//! share list | head`), JSON for scripts, and an exit code that says whose fault a failure
//! was. Documented in `settee --help` and the README:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | done (also when stdout was closed by its reader) |
//! | 1 | the operation failed: refused by the server, unreachable, an invalid document |
//! | 2 | bad usage: an unknown flag, a malformed argument (clap's own code for these too) |

use std::fmt;
use std::io::{self, Write};

use serde_json::{json, Value};

/// A mistake in how the command was called (exit code 2), as opposed to a failure of what it
/// tried to do (exit code 1).
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// `Err(Usage(..))` from a message.
pub fn usage<T>(msg: impl Into<String>) -> Result<T, Box<dyn std::error::Error>> {
    Err(Box::new(Usage(msg.into())))
}

/// The exit code for a command's error.
pub fn exit_code(e: &(dyn std::error::Error + 'static)) -> u8 {
    if e.is::<Usage>() {
        2
    } else {
        1
    }
}

/// Prints a command's error on stderr: `settee: reason`, or with `--json` one JSON object
/// (`{"error": "usage"|"failed", "reason": ...}`) so scripts parse failures as they parse
/// answers.
pub fn report_error(e: &(dyn std::error::Error + 'static), json_mode: bool) {
    let mut err = io::stderr().lock();
    let _ = if json_mode {
        let kind = if e.is::<Usage>() { "usage" } else { "failed" };
        writeln!(err, "{}", json!({"error": kind, "reason": e.to_string()}))
    } else {
        writeln!(err, "settee: {e}")
    };
}

/// Writes one line to stdout. A reader that stopped reading (a closed pipe) ends the process
/// quietly with success: the output was wanted only up to there. Any other write error ends
/// it with code 1 and a message.
pub fn line(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}").and_then(|_| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        let _ = writeln!(io::stderr(), "settee: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// One JSON value on one line (for `--json`).
pub fn json_line(v: &Value) {
    line(format_args!("{v}"));
}

/// `println!` through [`line`].
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { $crate::cli::output::line(format_args!($($t)*)) };
}
