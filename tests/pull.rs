//! `husk pull` and `husk images` against a real registry on 127.0.0.1, with throwaway roots.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::process::Command;

use common::*;
use support::*;

#[test]
fn pull_then_images_like_docker() {
    if !is_root() {
        eprintln!(
            "SKIP pull_then_images_like_docker: unpacking layers (ownership, whiteouts) needs root"
        );
        return;
    }
    let Some(reg) = start_registry() else { return };
    let (_, md) = push_app(&reg, "team/app");
    let root = tempfile::tempdir().unwrap();
    let name = format!("127.0.0.1:{}/team/app:v1", reg.port);

    let out = husk_output(root.path(), &["pull", &name], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("Digest: {md}")), "{stdout}");
    assert!(
        stdout.contains("Status: Downloaded newer image"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some(name.as_str()));

    assert_eq!(stdout.matches(": Pull complete").count(), 2, "{stdout}");
    let again = text(&husk_output(root.path(), &["pull", &name], None).stdout);
    assert!(again.contains("Status: Image is up to date"), "{again}");
    assert_eq!(again.matches(": Already exists").count(), 2, "{again}");
    let quiet = husk_output(root.path(), &["pull", "-q", &name], None);
    assert_eq!(text(&quiet.stdout), format!("{name}\n"));

    let table = text(&husk_output(root.path(), &["images"], None).stdout);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&format!("127.0.0.1:{}/team/app", reg.port)) && row.contains(" v1 "),
        "{row}"
    );
    assert_eq!(
        text(&husk_output(root.path(), &["images", "-q"], None).stdout)
            .trim()
            .len(),
        12,
        "a short image id"
    );

    // Errors: one line, exit 1, nothing recorded.
    for (args, needle) in [
        (
            vec!["pull".to_string(), "Not/Valid".to_string()],
            "invalid image reference",
        ),
        (
            vec![
                "pull".to_string(),
                format!("127.0.0.1:{}/team/app:missing", reg.port),
            ],
            "not found",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = husk_output(root.path(), &args, None);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.contains(needle) && err.lines().count() == 1, "{err}");
    }
    assert_eq!(
        text(&husk_output(root.path(), &["images", "-q"], None).stdout)
            .lines()
            .count(),
        1
    );
}

#[test]
fn a_pull_killed_mid_download_resumes_next_time() {
    if !is_root() {
        eprintln!("SKIP a_pull_killed_mid_download_resumes_next_time: unpacking layers needs root");
        return;
    }
    let Some(reg) = start_registry() else { return };
    let (data, blob) = push_big_image(&reg, "team/big");
    // The first large blob response stalls after 300 kB: the pull hangs there until killed.
    let proxy = flaky_proxy(reg.port, 1, 300_000, true);
    let root = tempfile::tempdir().unwrap();
    let name = format!("127.0.0.1:{}/team/big:big", proxy.port);
    let mut child = Command::new(env!("CARGO_BIN_EXE_husk"))
        .arg("--root")
        .arg(root.path())
        .args(["pull", "-q", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = root
        .path()
        .join("tmp")
        .join(format!("{}.partial", blob.hex()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 300_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the download never got going"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !root.path().join("blobs/sha256").join(blob.hex()).exists(),
        "nothing half-written is committed"
    );

    let out = husk_output(root.path(), &["pull", "-q", &name], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ranges = proxy.ranges.lock().unwrap().clone();
    assert!(
        ranges.iter().any(|r| !r.ends_with("=0-")),
        "the second pull resumed: {ranges:?}"
    );
    assert_eq!(image_file(root.path(), &name, "big"), data);
    assert!(!partial.exists());
}

/// A CA and a server certificate for `registry.test`, made with openssl.
fn test_ca(dir: &std::path::Path) -> bool {
    let sh = |script: &str| {
        Command::new("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
          -days 2 -subj /CN=husk-test-ca -addext basicConstraints=critical,CA:TRUE \
          -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
          -subj /CN=registry.test 2>/dev/null
        printf 'subjectAltName=DNS:registry.test\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
          -extfile ext 2>/dev/null
        printf '127.0.0.1 registry.test\\n' > hosts")
}

/// `husk --root ROOT ARGS…` in a mount namespace whose /etc/hosts maps registry.test to
/// 127.0.0.1: a registry that is not loopback by name, so husk wants HTTPS.
fn husk_with_hosts(
    root: &std::path::Path,
    hosts: &std::path::Path,
    env: &[(&str, &std::path::Path)],
    args: &[&str],
) -> (i32, String, String) {
    let mut c = Command::new("unshare");
    c.args([
        "-m",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
    ])
    .arg(hosts)
    .arg(env!("CARGO_BIN_EXE_husk"))
    .arg("--root")
    .arg(root)
    .args(args)
    .env_remove("SSL_CERT_FILE")
    .env_remove("SSL_CERT_DIR")
    .env("HUSK_CONFIG", root.join("no-config.json"));
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn https_with_the_system_roots_and_insecure_registries_from_config() {
    if !is_root() {
        eprintln!("SKIP https_with_the_system_roots_and_insecure_registries_from_config: needs root (mount namespace, unpack)");
        return;
    }
    let Some(plain) = start_registry() else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    if !test_ca(certs.path()) {
        eprintln!("SKIP https_with_the_system_roots_and_insecure_registries_from_config: openssl could not make a test CA");
        return;
    }
    push_app(&plain, "team/app");
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        certs.path().join("server.pem").display(),
        certs.path().join("server.key").display()
    );
    let Some(secure) = start_registry_sharing(&plain, &tls, "") else {
        return;
    };
    let hosts = certs.path().join("hosts");
    let ca = certs.path().join("ca.pem");

    // The test CA is not among the system's roots: refused, with the reason.
    let root = tempfile::tempdir().unwrap();
    let name = format!("registry.test:{}/team/app:v1", secure.port);
    let (code, _, err) = husk_with_hosts(root.path(), &hosts, &[], &["pull", "-q", &name]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("registry.test")
            && err.to_lowercase().contains("certificate")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(text(&husk_output(root.path(), &["images", "-q"], None).stdout).is_empty());

    // SSL_CERT_FILE names the roots (as for openssl): verified HTTPS.
    let (code, out, err) = husk_with_hosts(
        root.path(),
        &hosts,
        &[("SSL_CERT_FILE", &ca)],
        &["pull", "-q", &name],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{name}\n"));

    // The plain-HTTP registry under a non-loopback name: HTTPS fails until the config marks it
    // insecure.
    let plain_name = format!("registry.test:{}/team/app:v1", plain.port);
    let (code, _, err) = husk_with_hosts(
        root.path(),
        &hosts,
        &[("SSL_CERT_FILE", &ca)],
        &["pull", "-q", &plain_name],
    );
    assert_eq!(code, 1, "{err}");
    let config = root.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"insecure-registries": ["registry.test:{}"]}}"#,
            plain.port
        ),
    )
    .unwrap();
    let (code, _, err) = husk_with_hosts(
        root.path(),
        &hosts,
        &[("HUSK_CONFIG", &config)],
        &["pull", "-q", &plain_name],
    );
    assert_eq!(code, 0, "{err}");
    std::fs::write(&config, "{not json").unwrap();
    let (code, _, err) = husk_with_hosts(
        root.path(),
        &hosts,
        &[("HUSK_CONFIG", &config)],
        &["pull", "-q", &plain_name],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("config.json") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn token_auth_anonymous_and_with_login() {
    if !is_root() {
        eprintln!("SKIP token_auth_anonymous_and_with_login: unpacking layers needs root");
        return;
    }
    let Some(plain) = start_registry() else {
        return;
    };
    for repo in ["public/app", "private/app"] {
        push_app(&plain, repo);
    }
    let Some(tokens) = start_token_server("ci", "s3cret") else {
        return;
    };
    let Some(reg) = start_registry_sharing(&plain, "", &tokens.registry_config()) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let docker_config = tempfile::tempdir().unwrap();
    let public = format!("127.0.0.1:{}/public/app:v1", reg.port);
    let private = format!("127.0.0.1:{}/private/app:v1", reg.port);

    // An anonymous token for a public repository, asked for with the challenge's service and
    // this repository's pull scope.
    let (code, _, err) = husk_env(
        root.path(),
        &["pull", "-q", &public],
        Some(docker_config.path()),
    );
    assert_eq!(code, 0, "{err}");
    {
        let reqs = tokens.requests.lock().unwrap();
        let (query, auth) = reqs.last().unwrap();
        assert!(
            query.contains("scope=repository:public/app:pull")
                || query.contains("scope=repository%3Apublic%2Fapp%3Apull"),
            "{query}"
        );
        assert!(
            query.contains(&format!("service={TOKEN_SERVICE}")),
            "{query}"
        );
        assert!(auth.is_none(), "no credentials were stored");
    }

    // Anonymous access to the private repository is refused, in one line.
    let (code, _, err) = husk_env(
        root.path(),
        &["pull", "-q", &private],
        Some(docker_config.path()),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("private/app") && err.contains("denied") && err.lines().count() == 1,
        "{err}"
    );

    // login checks the credentials against the token server.
    let server = format!("127.0.0.1:{}", reg.port);
    let (code, _, err) = husk_env(
        root.path(),
        &["login", "-u", "ci", "-p", "wrong", &server],
        Some(docker_config.path()),
    );
    assert_eq!(code, 1, "{err}");
    let (code, out, err) = husk_env(
        root.path(),
        &["login", "-u", "ci", "-p", "s3cret", &server],
        Some(docker_config.path()),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Login Succeeded"));
    let (code, _, err) = husk_env(
        root.path(),
        &["pull", "-q", &private],
        Some(docker_config.path()),
    );
    assert_eq!(code, 0, "{err}");
    let reqs = tokens.requests.lock().unwrap();
    let (_, auth) = reqs.last().unwrap();
    assert_eq!(
        auth.as_deref(),
        Some(husk_image::registry::basic_auth("ci", "s3cret").as_str())
    );
}

#[test]
fn pull_on_a_terminal_draws_a_bar_per_layer() {
    if !is_root() {
        eprintln!("SKIP pull_on_a_terminal_draws_a_bar_per_layer: unpacking layers needs root");
        return;
    }
    let Some(reg) = start_registry() else { return };
    push_app(&reg, "team/app");
    let root = tempfile::tempdir().unwrap();
    let name = format!("127.0.0.1:{}/team/app:v1", reg.port);
    // script(1) runs husk with a pty as its stdout.
    let cmd = format!(
        "{} --root {} pull {name}",
        env!("CARGO_BIN_EXE_husk"),
        root.path().display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output();
    let Ok(out) = out else {
        eprintln!("SKIP pull_on_a_terminal_draws_a_bar_per_layer: script(1) is missing");
        return;
    };
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen}");
    // Bars are redrawn in place: each finished bar shows at least once.
    assert!(screen.matches("Pull complete").count() >= 2, "{screen}");
    assert!(
        screen.contains("] ") && screen.contains('='),
        "a progress bar: {screen}"
    );
    assert!(
        screen.contains("Status: Downloaded newer image"),
        "{screen}"
    );
}

#[test]
fn blob_redirects_to_another_host_get_no_credentials() {
    if !is_root() {
        eprintln!("SKIP blob_redirects_to_another_host_get_no_credentials: needs root (mount namespace, unpack)");
        return;
    }
    let Some((reg, _auth)) = start_registry_with_basic_auth("ci", "s3cret") else {
        return;
    };
    push_app(&reg, "team/app");
    let basic = reg.basic.clone().unwrap();
    // The blob host (S3, a CDN) is another host: registry.test here. It gets its own access
    // from the redirect URL, as a presigned URL would; it records what the client sent.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let blob_host = intercepting_proxy(reg.port, move |head| {
        let auth = head
            .iter()
            .position(|l| l.to_ascii_lowercase().starts_with("authorization:"));
        seen2.lock().unwrap().push(auth.map(|i| head.remove(i)));
        head.push(format!("Authorization: {basic}\r\n"));
        None
    });
    let front = intercepting_proxy(reg.port, move |head| {
        let path = head[0].split_whitespace().nth(1).unwrap_or("").to_string();
        path.contains("/blobs/sha256:").then(|| {
            format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://registry.test:{blob_host}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        })
    });
    let certs = tempfile::tempdir().unwrap();
    let hosts = certs.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 registry.test\n").unwrap();
    let root = tempfile::tempdir().unwrap();
    let docker_config = tempfile::tempdir().unwrap();
    let server = format!("127.0.0.1:{front}");
    let (code, _, err) = husk_env(
        root.path(),
        &["login", "-u", "ci", "-p", "s3cret", &server],
        Some(docker_config.path()),
    );
    assert_eq!(code, 0, "{err}");
    let name = format!("{server}/team/app:v1");
    let (code, _, err) = husk_with_hosts(
        root.path(),
        &hosts,
        &[("DOCKER_CONFIG", docker_config.path())],
        &["pull", "-q", &name],
    );
    assert_eq!(code, 0, "{err}");
    let seen = seen.lock().unwrap();
    assert!(
        seen.len() >= 3,
        "config and two layers came from the blob host: {seen:?}"
    );
    assert!(
        seen.iter().all(Option::is_none),
        "credentials leaked to the blob host: {seen:?}"
    );
}

#[test]
fn a_tampered_blob_is_caught_on_both_snapshotters() {
    if !is_root() {
        eprintln!("SKIP a_tampered_blob_is_caught_on_both_snapshotters: unpacking needs root");
        return;
    }
    let Some(reg) = start_registry() else { return };
    let (img, _) = push_app(&reg, "team/tampered");
    // The first layer (gzip): its diff_id, then a flipped byte in the middle of the registry's copy.
    let f = reg.blob_file(&img.layers[0]);
    let mut data = std::fs::read(&f).unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&data[..]), &mut tar).unwrap();
    let diff_id = husk_image::Digest::of(&tar);
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&f, &data).unwrap();
    let name = format!("127.0.0.1:{}/team/tampered:v1", reg.port);
    for driver in ["overlay", "erofs"] {
        let root = store();
        let (code, _, err) = husk(
            root.path(),
            &["--storage-driver", driver, "pull", "-q", &name],
        );
        assert_eq!(code, 1, "{driver}");
        assert!(err.lines().count() == 1, "{driver}: {err}");
        let layers = root.path().join("layers");
        for e in std::fs::read_dir(&layers).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            assert!(
                !n.contains(diff_id.hex()),
                "{driver}: the tampered layer was committed as {n}"
            );
        }
        assert!(
            !root
                .path()
                .join("blobs/sha256")
                .join(img.layers[0].hex())
                .exists(),
            "{driver}"
        );
        assert!(husk(root.path(), &["images", "-q"]).1.is_empty());
    }
}
