//! A client for the distribution API v2 (Docker Hub, GHCR, Quay, the CNCF registry): manifests
//! and blobs, with anonymous or credentialed bearer tokens from the `WWW-Authenticate`
//! challenge, basic auth, retries with backoff, and redirects that never carry our
//! Authorization header to another host.
//!
//! HTTPS is verified against the system's roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured) plus
//! any `*.crt` in `/etc/husk/certs.d/<host[:port]>/` or docker's `/etc/docker/certs.d/<host>/`.
//! Plain HTTP only for registries marked insecure: `--insecure`, the `insecure-registries` list
//! in husk's config file (docker's daemon.json key), and loopback addresses, as docker does.

use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::reference::Reference;

/// Largest manifest or token response we read: a hostile registry cannot make us buffer more.
const MAX_DOCUMENT: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Plain HTTP instead of HTTPS (loopback registries default to it).
    pub insecure: bool,
    pub credentials: Option<(String, String)>,
}

#[derive(Clone)]
pub struct Registry {
    agent: ureq::Agent,
    registry: String,
    base: String,
    repository: String,
    credentials: Option<(String, String)>,
    authorization: Option<String>,
}

pub struct Blob {
    pub reader: Box<dyn Read + Send + Sync>,
    pub size: Option<u64>,
}

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    h == "localhost" || h.starts_with("127.") || h == "[::1]"
}

/// key="value" pairs of a WWW-Authenticate challenge.
fn challenge_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = &rest[eq + 1..];
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_string());
        rest = tail;
    }
    out
}

/// An `Authorization: Basic` value.
pub fn basic_auth(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// The registries husk's config file marks insecure (plain HTTP).
/// How long a registry may take to answer a request: `$HUSK_REGISTRY_TIMEOUT` or the config's
/// `registry-timeout` (seconds), else 60 s. A registry that accepts the connection and never
/// answers fails after it, naming the request.
pub fn timeout() -> Result<Duration> {
    let bad = |v: &str| {
        Error::Config(format!(
            "registry timeout {v:?}: give whole seconds, above 0"
        ))
    };
    if let Ok(v) = std::env::var("HUSK_REGISTRY_TIMEOUT") {
        return match v.trim().parse::<u64>() {
            Ok(s) if s > 0 => Ok(Duration::from_secs(s)),
            _ => Err(bad(&v)),
        };
    }
    let v = crate::config::get("registry-timeout")?;
    match v.as_u64() {
        Some(s) if s > 0 => Ok(Duration::from_secs(s)),
        None if v.is_null() => Ok(Duration::from_secs(60)),
        _ => Err(bad(&v.to_string())),
    }
}

pub fn insecure_registries() -> Result<Vec<String>> {
    let v = crate::config::get("insecure-registries")?;
    if v.is_null() {
        return Ok(Vec::new());
    }
    serde_json::from_value(v)
        .map_err(|e| Error::Config(format!("insecure-registries in husk's config: {e}")))
}

/// Trust anchors for `host`: the system's, plus the registry's own CA files in certs.d.
fn root_certs(host: &str) -> Vec<ureq::tls::Certificate<'static>> {
    let mut roots: Vec<_> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    for base in ["/etc/husk/certs.d", "/etc/docker/certs.d"] {
        let Ok(dir) = std::fs::read_dir(std::path::Path::new(base).join(host)) else {
            continue;
        };
        for entry in dir.flatten() {
            if entry.path().extension().is_some_and(|e| e == "crt") {
                if let Ok(pem) = std::fs::read(entry.path()) {
                    roots.extend(ureq::tls::parse_pem(&pem).filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    }));
                }
            }
        }
    }
    roots
}

impl Registry {
    /// A client for `r`'s repository; without explicit credentials, those `husk login` stored.
    pub fn new(r: &Reference, opts: &Options) -> Result<Registry> {
        let credentials = opts
            .credentials
            .clone()
            .or_else(|| crate::auth::credentials(&r.registry).ok().flatten());
        let host = if r.registry == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            r.registry.clone()
        };
        let insecure =
            opts.insecure || is_loopback(&host) || insecure_registries()?.contains(&r.registry);
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Credentials follow a redirect only to the same host (a registry moving a path),
            // never to a blob store or CDN elsewhere.
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .timeout_connect(Some(timeout()?.min(Duration::from_secs(15))))
            .timeout_recv_response(Some(timeout()?));
        let scheme = if insecure {
            "http"
        } else {
            let roots = root_certs(&host);
            if roots.is_empty() {
                return Err(Error::Registry {
                    registry: r.registry.clone(),
                    why: "no trusted root certificates on this system (install ca-certificates, or set SSL_CERT_FILE)".into(),
                });
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                    .build(),
            );
            "https"
        };
        let agent: ureq::Agent = config.build().into();
        Ok(Registry {
            agent,
            registry: r.registry.clone(),
            base: format!("{scheme}://{host}/v2/{}", r.repository),
            repository: r.repository.clone(),
            credentials,
            authorization: None,
        })
    }

    fn fail(&self, why: impl Into<String>) -> Error {
        Error::Registry {
            registry: self.registry.clone(),
            why: why.into(),
        }
    }

    /// GET `url` with retries (connection errors and 5xx, backoff 0.2 s, 0.8 s) and one
    /// round of authentication when challenged.
    fn get(
        &mut self,
        url: &str,
        accept: Option<&str>,
        range_from: u64,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut authenticated = false;
        let mut attempt = 0u32;
        loop {
            let mut req = self.agent.get(url);
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if let Some(auth) = &self.authorization {
                req = req.header("Authorization", auth);
            }
            if range_from > 0 {
                req = req.header("Range", format!("bytes={range_from}-"));
            }
            let resp = match req.call() {
                Ok(r) => r,
                // A silent registry is not retried: that would triple the wait.
                Err(ureq::Error::Timeout(what)) => {
                    return Err(self.fail(format!(
                        "no answer to GET {url} within {} s ({what}; $HUSK_REGISTRY_TIMEOUT sets the limit)",
                        timeout()?.as_secs()
                    )))
                }
                Err(e) if attempt < 2 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(200 * 4u64.pow(attempt - 1)));
                    let _ = e;
                    continue;
                }
                Err(e) => return Err(self.fail(format!("cannot reach {url}: {e}"))),
            };
            let status = resp.status().as_u16();
            if status == 401 && !authenticated {
                authenticated = true;
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                self.authenticate(&challenge)?;
                continue;
            }
            if status >= 500 && attempt < 2 {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(200 * 4u64.pow(attempt - 1)));
                continue;
            }
            return Ok(resp);
        }
    }

    fn authenticate(&mut self, challenge: &str) -> Result<()> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let (u, p) = self
                    .credentials
                    .clone()
                    .ok_or_else(|| self.fail("needs credentials (husk login)"))?;
                self.authorization = Some(basic_auth(&u, &p));
                Ok(())
            }
            "bearer" => {
                let params = challenge_params(params);
                let realm = params
                    .get("realm")
                    .ok_or_else(|| self.fail("bearer challenge without a realm"))?;
                let mut url = format!("{realm}?scope=repository:{}:pull", self.repository);
                if let Some(service) = params.get("service") {
                    url.push_str(&format!("&service={service}"));
                }
                let mut req = self.agent.get(&url);
                if let Some((u, p)) = &self.credentials {
                    req = req.header("Authorization", basic_auth(u, p));
                }
                let mut resp = req
                    .call()
                    .map_err(|e| self.fail(format!("token server {realm}: {e}")))?;
                if resp.status().as_u16() != 200 {
                    return Err(
                        self.fail(format!("token server {realm} answered {}", resp.status()))
                    );
                }
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(MAX_DOCUMENT)
                    .read_to_vec()
                    .map_err(|e| self.fail(format!("token server {realm}: {e}")))?;
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| self.fail(format!("token server {realm} sent no JSON: {e}")))?;
                let token = v["token"]
                    .as_str()
                    .or(v["access_token"].as_str())
                    .ok_or_else(|| self.fail("the token server sent no token"))?;
                self.authorization = Some(format!("Bearer {token}"));
                Ok(())
            }
            _ => Err(self.fail(format!(
                "unsupported authentication challenge {challenge:?}"
            ))),
        }
    }

    /// Check that the registry accepts our credentials (`GET /v2/`), as `login` does.
    pub fn check_login(registry: &str, opts: &Options) -> Result<()> {
        let r = Reference {
            registry: registry.to_string(),
            repository: String::new(),
            tag: None,
            digest: None,
        };
        let mut reg = Registry::new(&r, opts)?;
        reg.base = reg.base.trim_end_matches('/').to_string();
        let url = format!("{}/", reg.base);
        let resp = reg.get(&url, None, 0)?;
        match resp.status().as_u16() {
            200 => Ok(()),
            401 | 403 => Err(reg.fail("unauthorized: the user name or password was refused")),
            s => Err(reg.fail(format!("GET /v2/ answered HTTP {s}"))),
        }
    }

    /// The manifest `reference` (a tag or a digest): its bytes and media type.
    pub fn manifest(&mut self, reference: &str) -> Result<(Vec<u8>, String)> {
        let url = format!("{}/manifests/{reference}", self.base);
        let mut resp = self.get(&url, Some(crate::manifest::ACCEPT), 0)?;
        let status = resp.status().as_u16();
        match status {
            200 => {}
            401 | 403 => {
                return Err(self.fail(format!(
                    "access to {}:{reference} denied ({status})",
                    self.repository
                )))
            }
            404 => return Err(self.fail(format!("{}:{reference} not found", self.repository))),
            s => return Err(self.fail(format!("manifest {reference}: HTTP {s}"))),
        }
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT)
            .read_to_vec()
            .map_err(|e| self.fail(format!("manifest {reference}: {e}")))?;
        Ok((body, ct))
    }

    /// A blob's content from byte `from` on (a Range request to resume a broken download).
    pub fn blob(&mut self, digest: &str, from: u64) -> Result<Blob> {
        let url = format!("{}/blobs/{digest}", self.base);
        let resp = self.get(&url, None, from)?;
        let status = resp.status().as_u16();
        let ok = status == 200 || (from > 0 && status == 206);
        if from > 0 && status == 416 {
            return Err(Error::RangeRefused {
                registry: self.registry.clone(),
                blob: digest.to_string(),
            });
        }
        if !ok {
            return Err(self.fail(format!("blob {digest}: HTTP {status}")));
        }
        let size = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let mut reader: Box<dyn Read + Send + Sync> = Box::new(resp.into_body().into_reader());
        if from > 0 && status == 200 {
            // The registry ignored the Range request: skip what we already have.
            std::io::copy(&mut reader.by_ref().take(from), &mut std::io::sink())
                .map_err(|e| self.fail(format!("blob {digest}: {e}")))?;
        }
        Ok(Blob { reader, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_basic_auth() {
        let p = challenge_params(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a", "b"), "Basic YTpi");
        assert!(
            is_loopback("127.0.0.1:5000") && is_loopback("localhost") && !is_loopback("ghcr.io")
        );
    }
}
