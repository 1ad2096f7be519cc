//! Manifests, indexes and image configs, OCI and Docker v2 alike (the JSON shapes match).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Every type we read, for the Accept header (a registry answers 404 to OCI types otherwise).
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    /// "os/arch[/variant]", as --platform spells it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The host's platform in OCI terms.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            other => other,
        };
        Platform {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: None,
        }
    }

    /// "os/arch[/variant]", as --platform takes it.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(Error::Manifest(format!(
                "platform {s:?} is not os/arch[/variant]"
            ))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub rootfs: RootFs,
    /// The runtime settings (Entrypoint, Cmd, Env, ...), kept as they are for the engine.
    #[serde(default)]
    pub config: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub typ: String,
    pub diff_ids: Vec<String>,
}

pub enum Parsed {
    Index(Index),
    Manifest(Manifest),
}

/// Parse manifest bytes by their media type (the Content-Type, else the document's own).
pub fn parse(bytes: &[u8], content_type: &str) -> Result<Parsed> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Error::Manifest(format!("not JSON: {e}")))?;
    if v["schemaVersion"] == 1 {
        return Err(Error::Manifest("Docker schema 1 manifests are not supported (deprecated since 2019); push the image again with a current client".into()));
    }
    let declared = v["mediaType"].as_str().unwrap_or("").to_string();
    let kind: &str = match content_type.split(';').next().unwrap_or("").trim() {
        t @ (OCI_INDEX | DOCKER_LIST | OCI_MANIFEST | DOCKER_MANIFEST) => t,
        _ if !declared.is_empty() => declared.as_str(),
        _ if v.get("manifests").is_some() => OCI_INDEX,
        _ => OCI_MANIFEST,
    };
    let kind = kind.to_string();
    let err = |e: serde_json::Error| Error::Manifest(format!("malformed {kind}: {e}"));
    match kind.as_str() {
        OCI_INDEX | DOCKER_LIST => Ok(Parsed::Index(serde_json::from_value(v).map_err(err)?)),
        OCI_MANIFEST | DOCKER_MANIFEST => {
            Ok(Parsed::Manifest(serde_json::from_value(v).map_err(err)?))
        }
        other => Err(Error::Manifest(format!(
            "unsupported manifest type {other}"
        ))),
    }
}

/// The index entry for `want`: os and architecture must match, the variant when asked for.
pub fn select<'a>(index: &'a Index, want: &Platform) -> Result<&'a Descriptor> {
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == want.os
                    && p.architecture == want.architecture
                    && (want.variant.is_none() || p.variant == want.variant)
            })
        })
        .ok_or_else(|| {
            let have: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| {
                    format!(
                        "{}/{}{}",
                        p.os,
                        p.architecture,
                        p.variant
                            .as_ref()
                            .map(|v| format!("/{v}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            Error::Manifest(format!(
                "no image for {}/{} (the index has {})",
                want.os,
                want.architecture,
                have.join(", ")
            ))
        })
}

/// What the fuzzer and the corpus test feed: a manifest, index or config from anyone. Parsing
/// and platform selection may refuse it, never panic.
pub fn check_untrusted(data: &[u8]) {
    for ct in ["", OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST] {
        if let Ok(Parsed::Index(i)) = parse(data, ct) {
            let _ = select(&i, &Platform::host());
            let _ = select(
                &i,
                &Platform {
                    architecture: "arm".into(),
                    os: "linux".into(),
                    variant: Some("v7".into()),
                },
            );
        }
    }
    let _ = serde_json::from_slice::<ImageConfig>(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema1_is_refused_and_platforms_are_selected() {
        let e = parse(br#"{"schemaVersion": 1, "name": "x"}"#, "")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("schema 1"), "{e}");
        let idx = br#"{"schemaVersion": 2, "manifests": [
            {"mediaType": "x", "digest": "sha256:aa", "size": 1, "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": "x", "digest": "sha256:bb", "size": 1, "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "x", "digest": "sha256:cc", "size": 1, "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}}]}"#;
        let Parsed::Index(i) = parse(idx, DOCKER_LIST).unwrap() else {
            panic!("an index")
        };
        assert_eq!(
            select(&i, &Platform::parse("linux/amd64").unwrap())
                .unwrap()
                .digest,
            "sha256:bb"
        );
        assert_eq!(
            select(&i, &Platform::parse("linux/arm/v7").unwrap())
                .unwrap()
                .digest,
            "sha256:cc"
        );
        let e = select(&i, &Platform::parse("linux/s390x").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux/amd64") && e.contains("s390x"), "{e}");
        assert!(Platform::parse("linux").is_err());
    }
}
