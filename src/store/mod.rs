//! The sled document store.
