//! The `husk` binary is linked without PIE. A detached container's monitor is a fork of
//! it that lives as long as the container: in a position-independent binary, the loader
//! writes every pointer of `.data.rel.ro` (vtables, panic locations, static tables) at
//! start, about 430 kB copied into each process; linked at a fixed address, those pages
//! stay the file's, shared by every monitor and given back when it sleeps
//! (`husk_sys::memory::shed`). The libraries and the stack are still placed at random.
fn main() {
    println!("cargo:rustc-link-arg-bin=husk=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
