//! Command-line definitions for husk's binaries, and nothing else: parsing lives here so the
//! runc-compatible surface can be read (and tested) in one place, the logic lives in the crates
//! that own it.
//!
//! What it must not know: everything but clap. It depends on no other husk crate.

pub mod husk;
pub mod runtime;
