//! settee: a CouchDB-compatible document store and replication engine.
//!
//! See `ARCHITECTURE.md` at the top of the repository for the module map, the data flow of one
//! replication and the invariants every module keeps.

pub mod alloc;
pub mod cli;
pub mod debug;
pub mod feed;
pub mod fuzz;
pub mod http;
pub mod ids;
pub mod logging;
pub mod mango;
pub mod metrics;
pub mod replicator;
pub mod scheduler;
pub mod server;
pub mod sharing;
pub mod store;
