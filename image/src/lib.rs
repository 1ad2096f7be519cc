//! husk's image half: references, the content-addressed blob store and layer unpacking.
//!
//! Built so far: image references as docker parses them (`reference`), digests and verified
//! writes into a content-addressed store (`digest`, `store`), and the layer unpacker that turns
//! an OCI layer into an overlayfs-ready directory and refuses hostile entries (`unpack`).
//! Not yet: the registry client, manifests and image configs, the `husk` commands (issue 4).

pub mod auth;
pub mod digest;
pub mod error;
pub mod images;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::Reference;
