//! Command-line definitions for husk's binaries, and nothing else: parsing lives here so the
//! runc-compatible surface can be read (and tested) in one place, the logic lives in the crates
//! that own it.

pub mod husk;
pub mod runtime;
