//! Registry credentials in docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), so `husk login` and `docker login` share them. Other keys in the
//! file are kept as they are.

use std::fs;
use std::path::PathBuf;

use base64::Engine;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Docker Hub's key in config.json.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

pub fn config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".docker/config.json"),
    }
}

fn key(registry: &str) -> String {
    if registry == "docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

fn read() -> Result<Value> {
    let path = config_path();
    match fs::read(&path) {
        Ok(d) => serde_json::from_slice(&d).map_err(|e| {
            Error::io(
                format!("{} is not valid JSON", path.display()),
                std::io::Error::other(e),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
    }
}

fn write(v: &Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = config_path();
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let data = serde_json::to_vec_pretty(v)
        .map_err(|e| Error::io("cannot encode credentials", std::io::Error::other(e)))?;
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &data))
        .and_then(|()| fs::rename(&tmp, &path));
    written.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(format!("cannot write {}", path.display()), e)
    })
}

/// Stored credentials for `registry`, if any.
pub fn credentials(registry: &str) -> Result<Option<(String, String)>> {
    let v = read()?;
    let Some(auth) = v["auths"][key(registry)]["auth"].as_str() else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .map_err(|_| Error::Registry {
            registry: registry.into(),
            why: format!(
                "the stored credentials in {} are not base64",
                config_path().display()
            ),
        })?;
    let text = String::from_utf8_lossy(&raw);
    Ok(text
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string())))
}

pub fn store(registry: &str, user: &str, password: &str) -> Result<()> {
    let mut v = read()?;
    if !v["auths"].is_object() {
        v["auths"] = json!({});
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    v["auths"][key(registry)] = json!({ "auth": auth });
    write(&v)
}

/// Forget `registry`'s credentials; false when there were none.
pub fn remove(registry: &str) -> Result<bool> {
    let mut v = read()?;
    let removed = v["auths"]
        .as_object_mut()
        .and_then(|m| m.remove(&key(registry)))
        .is_some();
    if removed {
        write(&v)?;
    }
    Ok(removed)
}
