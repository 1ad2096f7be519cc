//! husk's config file (`$HUSK_CONFIG`, else `/etc/husk/config.json`): docker's daemon.json keys
//! where they overlap (`insecure-registries`, `storage-driver`) plus husk's own
//! (`layer-mount-grace`). Read once per process; a missing file is an empty config.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::error::{Error, Result};

pub const DEFAULT_PATH: &str = "/etc/husk/config.json";

fn path() -> PathBuf {
    std::env::var_os("HUSK_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_PATH.into())
}

fn load() -> std::result::Result<serde_json::Value, String> {
    let path = path();
    match std::fs::read(&path) {
        Ok(t) => {
            serde_json::from_slice(&t).map_err(|e| format!("husk's config {}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::Value::Null),
        Err(e) => Err(format!("cannot read husk's config {}: {e}", path.display())),
    }
}

static CONFIG: OnceLock<std::result::Result<serde_json::Value, String>> = OnceLock::new();

/// Read the config now (relative to this cwd), for the `get`s that come later.
pub fn preload() {
    CONFIG.get_or_init(load);
}

/// The value of `key` in the config file (`Null` when absent).
pub fn get(key: &str) -> Result<serde_json::Value> {
    match CONFIG.get_or_init(load) {
        Ok(v) => Ok(v[key].clone()),
        Err(e) => Err(Error::Config(e.clone())),
    }
}
