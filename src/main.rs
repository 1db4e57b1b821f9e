//! The `settee` binary: parse the command line, run one command, exit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use settee::store::{Store, StoreConfig};

#[derive(Parser)]
#[command(
    name = "settee",
    version,
    about = "A CouchDB-compatible replication engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open the store and print the databases it holds.
    Inspect {
        /// Data directory.
        #[arg(long, env = "SETTEE_DATA", default_value = "data")]
        data: PathBuf,
    },
    /// Test helper: write numbered batches forever, printing each committed batch number.
    #[command(hide = true)]
    CrashWriter {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 50)]
        batch: usize,
    },
}

fn main() -> ExitCode {
    settee::logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect { data } => inspect(data),
        Command::CrashWriter { data, batch } => settee::debug::crash_writer(&data, batch),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("settee: {e}");
            ExitCode::FAILURE
        }
    }
}

fn inspect(data: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(&StoreConfig::new(&data))?;
    println!("settee store at {} (uuid {})", data.display(), store.uuid());
    for name in store.all_dbs()? {
        let info = store.db(&name)?.info()?;
        println!(
            "  {name}: {} docs, {} deleted, update_seq {}",
            info.doc_count, info.doc_del_count, info.update_seq
        );
    }
    Ok(())
}
