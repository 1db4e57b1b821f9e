//! Mango selectors (placeholder until the engine lands).
