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
    /// Ask token servers for push rights too.
    push: bool,
}

/// A request's body.
pub enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// Opened anew for each try: a reader and its length.
    Reader(&'a dyn Fn() -> Result<(Box<dyn Read + Send>, u64)>),
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
            push: false,
        })
    }

    fn fail(&self, why: impl Into<String>) -> Error {
        Error::Registry {
            registry: self.registry.clone(),
            why: why.into(),
        }
    }

    /// GET `url` with retries and authentication (see `send`).
    fn get(
        &mut self,
        url: &str,
        accept: Option<&str>,
        range_from: u64,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut headers = Vec::new();
        if let Some(a) = accept {
            headers.push(("Accept", a.to_string()));
        }
        if range_from > 0 {
            headers.push(("Range", format!("bytes={range_from}-")));
        }
        self.send("GET", url, &headers, &Payload::Empty)
    }

    /// `method` on `url` with retries (connection errors and 5xx, backoff 0.2 s, 0.8 s) and
    /// one round of authentication when challenged; the payload is made anew for each try.
    fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        payload: &Payload,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut authenticated = false;
        let mut attempt = 0u32;
        loop {
            let mut req = ureq::http::Request::builder().method(method).uri(url);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(auth) = &self.authorization {
                req = req.header("Authorization", auth);
            }
            let sent = match payload {
                Payload::Empty => req
                    .body(())
                    .map_err(|e| self.fail(format!("{method} {url}: {e}")))
                    .map(|r| self.agent.run(r)),
                Payload::Bytes(b) => req
                    .header("Content-Length", b.len())
                    .body(*b)
                    .map_err(|e| self.fail(format!("{method} {url}: {e}")))
                    .map(|r| self.agent.run(r)),
                Payload::Reader(open) => {
                    let (reader, size) = open()?;
                    req.header("Content-Length", size)
                        .body(ureq::SendBody::from_owned_reader(reader))
                        .map_err(|e| self.fail(format!("{method} {url}: {e}")))
                        .map(|r| self.agent.run(r))
                }
            }?;
            let resp = match sent {
                Ok(r) => r,
                // A silent registry is not retried: that would triple the wait.
                Err(ureq::Error::Timeout(what)) => {
                    return Err(self.fail(format!(
                        "no answer to {method} {url} within {} s ({what}; $HUSK_REGISTRY_TIMEOUT sets the limit)",
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
                let actions = if self.push { "pull,push" } else { "pull" };
                let mut url = format!("{realm}?scope=repository:{}:{actions}", self.repository);
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

    /// The same client, asking token servers for push rights as well.
    pub fn for_push(mut self) -> Registry {
        self.push = true;
        self.authorization = None;
        self
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Whether the repository has blob `digest` (HEAD).
    pub fn has_blob(&mut self, digest: &str) -> Result<bool> {
        let url = format!("{}/blobs/{digest}", self.base);
        let resp = self.send("HEAD", &url, &[], &Payload::Empty)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            401 | 403 => Err(self.denied()),
            s => Err(self.fail(format!("HEAD blob {digest}: HTTP {s}"))),
        }
    }

    fn denied(&self) -> Error {
        self.fail(format!(
            "push to {} denied (log in with husk login, or check the account's rights)",
            self.repository
        ))
    }

    /// Start an upload; with `mount_from`, first ask to mount `digest` from that repository
    /// of the same registry. None: the blob was mounted. Some(url): upload there.
    fn start_upload(&mut self, digest: &str, mount_from: Option<&str>) -> Result<Option<String>> {
        let url = match mount_from {
            Some(from) => format!("{}/blobs/uploads/?mount={digest}&from={from}", self.base),
            None => format!("{}/blobs/uploads/", self.base),
        };
        let resp = self.send("POST", &url, &[], &Payload::Empty)?;
        match resp.status().as_u16() {
            201 if mount_from.is_some() => Ok(None),
            202 => {
                let location = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| self.fail("an upload was started without a Location"))?;
                Ok(Some(self.absolute(location)))
            }
            401 | 403 => Err(self.denied()),
            s => Err(self.fail(format!("starting the upload of {digest}: HTTP {s}"))),
        }
    }

    /// A Location header as a full URL (registries may send a path).
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            return location.to_string();
        }
        // scheme://host of our base URL.
        let host_end = self
            .base
            .find("://")
            .and_then(|i| self.base[i + 3..].find('/').map(|j| i + 3 + j))
            .unwrap_or(self.base.len());
        format!("{}{}", &self.base[..host_end], location)
    }

    /// Put blob `digest` into the repository unless it is there: mounted from `mount_from`
    /// where the registry offers that, else uploaded in one PUT from what `open` gives.
    pub fn push_blob(
        &mut self,
        digest: &str,
        mount_from: Option<&str>,
        open: &dyn Fn() -> Result<(Box<dyn Read + Send>, u64)>,
    ) -> Result<BlobPush> {
        if self.has_blob(digest)? {
            return Ok(BlobPush::Existed);
        }
        let Some(location) = self.start_upload(digest, mount_from)? else {
            return Ok(BlobPush::Mounted);
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let headers = [("Content-Type", "application/octet-stream".to_string())];
        let resp = self.send("PUT", &url, &headers, &Payload::Reader(open))?;
        match resp.status().as_u16() {
            201 | 204 => Ok(BlobPush::Uploaded),
            400 => Err(self.fail(format!(
                "the registry refused blob {digest} (HTTP 400: it does not hash to its digest, or the upload broke)"
            ))),
            401 | 403 => Err(self.denied()),
            s => Err(self.fail(format!("uploading blob {digest}: HTTP {s}"))),
        }
    }

    /// PUT a manifest under `reference` (a tag); the digest the registry gives it.
    pub fn put_manifest(
        &mut self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String> {
        let url = format!("{}/manifests/{reference}", self.base);
        let headers = [("Content-Type", media_type.to_string())];
        let mut resp = self.send("PUT", &url, &headers, &Payload::Bytes(bytes))?;
        match resp.status().as_u16() {
            200..=202 => Ok(resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()),
            401 | 403 => Err(self.denied()),
            s => {
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_string()
                    .unwrap_or_default();
                let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
                Err(self.fail(format!(
                    "the registry refused the manifest for {}:{reference}: HTTP {s} {body}",
                    self.repository
                )))
            }
        }
    }
}

/// What became of a blob to push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The repository had it.
    Existed,
    /// Mounted from another repository of the registry: no bytes sent.
    Mounted,
    Uploaded,
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
