//! husk's image half: references (`reference`), the registry client and its credentials
//! (`registry`, `auth`), manifests and configs (`manifest`), the verified content-addressed
//! store (`digest`, `store`), pulling (`pull`), image names (`images`), layer unpacking that
//! refuses hostile entries (`unpack`), overlay snapshots (`snapshot`), and image archives
//! (`archive`: docker-archive and OCI layout, for save and load).
//!
//! What it must not know: processes, containers and their records. It gives a root filesystem
//! (a mounted snapshot) to whoever asks and counts the users of shared layer mounts; who runs
//! what in it is the engine's business. Inside, `pull` calls down into `snapshot` (layer paths,
//! the driver choice), never the other way.

pub mod archive;
pub mod auth;
pub mod check;
pub mod compose;
pub mod config;
pub mod digest;
pub mod erofs;
pub mod error;
pub mod failpoint;
pub mod images;
pub mod import;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::Reference;
