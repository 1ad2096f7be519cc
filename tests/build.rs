//! Making images: `commit` (a container's changes as a layer), `push` (to a registry, only
//! what it lacks, and back with `pull` into a fresh store), and `build` from a Dockerfile.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use common::*;
use support::Entry;

/// The image's layers as the test registry's storage has them: (media type, digest).
fn manifest_layers(reg: &support::TestRegistry, repo: &str, tag: &str) -> serde_json::Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(format!("{}/manifests/{tag}", reg.base(repo)))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .call()
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{repo}:{tag} is in the registry"
    );
    serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap()
}

#[test]
fn commit_makes_an_image_of_what_a_container_changed() {
    let data = support::layer(&[
        Entry::Dir("data/"),
        Entry::File("data/a", b"a"),
        Entry::File("data/b", b"b"),
    ]);
    let Some((_reg, root, img)) = busybox_store("commit_makes_an_image", &[data]) else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--name",
            "changer",
            "-e",
            "FROM_RUN=1",
            &img,
            "sh",
            "-c",
            "mkdir -p /newdir && echo content > /newdir/f && ln /newdir/f /newdir/g \
             && ln -s f /newdir/link && mkfifo /newdir/pipe && rm /etc/group \
             && rm -rf /data && mkdir /data && echo n > /data/new && chmod 4755 /newdir/f",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, id, err) = husk(
        r,
        &[
            "commit",
            "-c",
            "CMD [\"cat\", \"/newdir/f\"]",
            "-c",
            "LABEL made=commit",
            "-m",
            "made by the test",
            "-a",
            "tester",
            "changer",
            "committed:v1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(id.trim().starts_with("sha256:"), "{id}");
    // Its CMD, its files: added, changed, deleted, a directory made anew (opaque), hard
    // and symbolic links, a fifo, modes.
    let (code, out, err) = husk(r, &["run", "--rm", "committed:v1"]);
    assert_eq!((code, out.as_str()), (0, "content\n"), "{err}");
    let (code, out, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "committed:v1",
            "sh",
            "-c",
            "ls /data; stat -c '%h %A' /newdir/f; readlink /newdir/link; \
             test -p /newdir/pipe && echo fifo; test -e /etc/group || echo no-group; \
             echo $FROM_RUN $FROM_IMAGE",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "new\n2 -rwsr-xr-x\nf\nfifo\nno-group\n1 yes\n");
    let inspect = |name: &str| -> serde_json::Value {
        let (code, out, err) = husk(r, &["image", "inspect", name]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if v.is_array() {
            v[0].clone()
        } else {
            v
        }
    };
    let committed = inspect("committed:v1");
    assert_eq!(
        committed["Config"]["Labels"]["made"], "commit",
        "{committed}"
    );
    assert_eq!(
        committed["Config"]["Cmd"],
        serde_json::json!(["cat", "/newdir/f"])
    );
    let (code, out, _) = husk(r, &["history", "--format", "{{.Comment}}", "committed:v1"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().next(), Some("made by the test"));

    // A container that changed nothing: the image gains a history step, no layer.
    assert_eq!(husk(r, &["create", "--name", "idle", &img]).0, 0);
    let (code, _, err) = husk(r, &["commit", "idle", "committed:same"]);
    assert_eq!(code, 0, "{err}");
    let layers = |name: &str| inspect(name)["RootFS"]["Layers"].clone();
    assert_eq!(layers("committed:same"), layers(&img));

    // Bad input: one line each, nothing made.
    for (args, word) in [
        (vec!["commit", "nosuch", "x:y"], "nosuch"),
        (vec!["commit", "changer", "UPPER:case"], "UPPER"),
        (
            vec!["commit", "-c", "FROM busybox", "changer", "x:y"],
            "FROM",
        ),
    ] {
        let (code, _, err) = husk(r, &args);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(word), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert!(husk(r, &["image", "inspect", "x:y"]).0 != 0);
    assert_eq!(husk(r, &["rm", "-f", "changer", "idle"]).0, 0);
}

#[test]
fn push_sends_what_the_registry_lacks_and_pulls_back_the_same_tree() {
    let Some((reg, root, img)) = busybox_store("push_sends_what_the_registry_lacks", &[]) else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--name",
            "maker",
            &img,
            "sh",
            "-c",
            "echo pushed > /made",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let target = format!("127.0.0.1:{}/team/app:v1", reg.port);
    let (code, _, err) = husk(r, &["commit", "-c", "CMD cat /made", "maker", &target]);
    assert_eq!(code, 0, "{err}");

    // The busybox layer is mounted from the repository it was pulled from; the new layer
    // and the config are uploaded.
    let (code, out, err) = husk(r, &["push", &target]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "The push refers to repository [127.0.0.1:{}/team/app]\n",
            reg.port
        )),
        "{out}"
    );
    assert_eq!(out.matches("Mounted from lib/busybox").count(), 1, "{out}");
    assert_eq!(out.matches(": Pushed").count(), 2, "{out}");
    let digest_line = out.lines().last().unwrap();
    assert!(digest_line.starts_with("v1: digest: sha256:"), "{out}");
    let m = manifest_layers(&reg, "team/app", "v1");
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["layers"].as_array().unwrap().len(), 2);

    // Again: everything is there already.
    let (code, out, err) = husk(r, &["push", &target]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("Layer already exists").count(), 3, "{out}");

    // Pulled back into a fresh store, the image runs the same.
    let fresh = store();
    let (code, _, err) = husk(fresh.path(), &["pull", "-q", &target]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = husk(fresh.path(), &["run", "--rm", &target]);
    assert_eq!((code, out.as_str()), (0, "pushed\n"), "{err}");
    let id = |root: &std::path::Path| {
        let out = husk(root, &["image", "inspect", &target]).1;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["Id"]
            .as_str()
            .or(v["Id"].as_str())
            .unwrap()
            .to_string()
    };
    assert_eq!(
        id(r),
        id(fresh.path()),
        "the same config, so the same image id"
    );

    // Bad input: one line, naming what.
    let (code, _, err) = husk(r, &["push", &format!("127.0.0.1:{}/nosuch:v1", reg.port)]);
    assert_ne!(code, 0);
    assert!(err.contains("nosuch"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(husk(r, &["rm", "-f", "maker"]).0, 0);
}

#[test]
fn push_asks_the_token_server_for_push_rights() {
    if !is_root() {
        eprintln!("SKIP push_asks_the_token_server_for_push_rights: containers need root");
        return;
    }
    let Some(tokens) = support::start_token_server("pusher", "s3cret") else {
        return;
    };
    let Some(reg) = support::start_registry_with(&tokens.registry_config()) else {
        return;
    };
    let root = store();
    let r = root.path();
    let config = tempfile::tempdir().unwrap();
    let target = format!("127.0.0.1:{}/private/app:v1", reg.port);
    let layer = support::gzip(&support::layer(&[Entry::File("hello", b"hi")]));
    let tarball = config.path().join("rootfs.tar.gz");
    std::fs::write(&tarball, layer).unwrap();
    let (code, _, err) = husk(r, &["import", tarball.to_str().unwrap(), &target]);
    assert_eq!(code, 0, "{err}");
    let dc = Some(config.path());
    // Anonymous: refused, saying so in one line.
    let (code, _, err) = husk_env(r, &["push", &target], dc);
    assert_ne!(code, 0);
    assert!(err.contains("denied") || err.contains("token"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let server = format!("127.0.0.1:{}", reg.port);
    let (code, _, err) = husk_env(r, &["login", "-u", "pusher", "-p", "s3cret", &server], dc);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = husk_env(r, &["push", &target], dc);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("v1: digest: sha256:"), "{out}");
    let asked = tokens.requests.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .any(|(q, _)| q.contains("repository:private/app:pull,push")),
        "{asked:?}"
    );
}
