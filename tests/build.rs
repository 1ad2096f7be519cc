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

    // An image pulled with a Docker v2 manifest goes out as one, byte for byte.
    let docker = support::push_image(
        &reg,
        "lib/dockerfmt",
        true,
        husk_image::manifest::Platform::host().architecture.as_str(),
    );
    reg.push_manifest(
        "lib/dockerfmt",
        "latest",
        "application/vnd.docker.distribution.manifest.v2+json",
        &docker.manifest,
    );
    let pulled = format!("127.0.0.1:{}/lib/dockerfmt:latest", reg.port);
    assert_eq!(husk(r, &["pull", "-q", &pulled]).0, 0);
    let copy = format!("127.0.0.1:{}/team/dockerfmt:v1", reg.port);
    assert_eq!(husk(r, &["tag", &pulled, &copy]).0, 0);
    let (code, out, err) = husk(r, &["push", &copy]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.matches("Mounted from lib/dockerfmt").count(),
        3,
        "{out}"
    );
    let m = manifest_layers(&reg, "team/dockerfmt", "v1");
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let original = manifest_layers(&reg, "lib/dockerfmt", "latest");
    assert_eq!(m, original);

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

/// A context directory with these files (paths relative, parents made).
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (p, content) in files {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

fn build(root: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    husk(root, &all)
}

fn image_id(root: &std::path::Path, name: &str) -> String {
    let (code, out, err) = husk(root, &["image", "inspect", name]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let v = if v.is_array() { v[0].clone() } else { v };
    v["Id"].as_str().unwrap().to_string()
}

const EVERY_INSTRUCTION: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=IMAGE
FROM ${BASE} AS base
ARG GREETING=hello
ENV APP=/app \
    MODE=test
WORKDIR /app
COPY --chmod=755 run.sh ./
COPY dir/ /app/dir/
COPY *.txt /app/texts/
COPY . /ctx/
ADD archive.tar /app/unpacked/
RUN echo "$GREETING from run in $(pwd)" > /app/greeting && rm /etc/group
RUN <<EOF
echo heredoc > /app/heredoc
EOF
COPY <<EOF /app/notes
notes for $APP
EOF
LABEL stage=base
EXPOSE 8080/tcp
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s CMD true
ONBUILD RUN echo triggered > /triggered
CMD ["sh", "-c", "cat /app/greeting"]

FROM scratch AS tiny
COPY --from=base /bin/busybox /bin/busybox
COPY --from=base /app/greeting /greeting
CMD ["/bin/busybox", "cat", "/greeting"]
"#;

#[test]
fn build_takes_every_instruction_and_caches_by_content() {
    let Some((_reg, root, img)) = busybox_store("build_takes_every_instruction", &[]) else {
        return;
    };
    let r = root.path();
    let dockerfile = EVERY_INSTRUCTION.replace("IMAGE", &img);
    let ctx = context(&[
        ("Dockerfile", &dockerfile),
        ("run.sh", "#!/bin/sh\necho run\n"),
        ("dir/a", "a"),
        ("dir/sub/b", "b"),
        ("one.txt", "1"),
        ("two.txt", "2"),
        ("README.md", "not copied"),
        ("secret/other", "not copied"),
        ("secret/keep", "kept"),
        (".dockerignore", "*.md\nsecret/\n!secret/keep\n"),
        ("unrelated", "v1"),
    ]);
    std::fs::write(
        ctx.path().join("archive.tar"),
        support::layer(&[
            Entry::Dir("inner/"),
            Entry::File("inner/file", b"from the archive"),
        ]),
    )
    .unwrap();
    let c = ctx.path().to_str().unwrap();
    let base = ["--target", "base", "--build-arg", "GREETING=hi"];
    let with = |tag: &str| {
        let mut v = vec!["-t", tag];
        v.extend_from_slice(&base);
        v.push(c);
        v.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let args = with("built:v1");
    let (code, out, err) = build(r, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Step 1/20 : ARG BASE="), "{out}");
    assert!(
        out.contains("# syntax=docker/dockerfile:1 is ignored"),
        "{out}"
    );
    assert!(out.contains(" ---> Running in "), "{out}");
    assert!(out.contains("Successfully tagged "), "{out}");
    let (code, out, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "built:v1",
            "sh",
            "-c",
            "cat /app/greeting /app/heredoc /app/notes /app/dir/a /app/dir/sub/b /app/texts/one.txt \
             /app/texts/two.txt /app/unpacked/inner/file; echo; stat -c %a /app/run.sh; \
             ls -A /ctx | tr '\\n' ' '; echo; ls /ctx/secret; test -e /etc/group || echo no-group; \
             echo $APP $MODE; pwd",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "hi from run in /app\nheredoc\nnotes for /app\nab12from the archive\n755\n\
         .dockerignore Dockerfile archive.tar dir one.txt run.sh secret two.txt unrelated \n\
         keep\nno-group\n/app test\n/app\n",
    );
    let (code, out, _) = husk(r, &["run", "--rm", "built:v1"]);
    assert_eq!((code, out.as_str()), (0, "hi from run in /app\n"));
    let (_, out, _) = husk(r, &["image", "inspect", "built:v1"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let config = if v.is_array() {
        v[0]["Config"].clone()
    } else {
        v["Config"].clone()
    };
    assert_eq!(config["Labels"]["stage"], "base", "{config}");
    assert_eq!(config["ExposedPorts"]["8080/tcp"], serde_json::json!({}));
    assert_eq!(config["Volumes"]["/data"], serde_json::json!({}));
    assert_eq!(config["StopSignal"], "SIGTERM");
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "true"])
    );
    assert_eq!(config["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert_eq!(
        config["OnBuild"],
        serde_json::json!(["RUN echo triggered > /triggered"])
    );

    // The whole file: the scratch stage gets busybox and the greeting from the first.
    let (code, out, err) = build(r, &["-t", "tiny", "--build-arg", "GREETING=hi", c]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = husk(r, &["run", "--rm", "tiny"]);
    assert_eq!((code, out.as_str()), (0, "hi from run in /app\n"), "{err}");

    // A file no step copies changed (README.md is ignored): every step from the cache.
    let first = image_id(r, "built:v1");
    std::fs::write(ctx.path().join("README.md"), "changed, and ignored").unwrap();
    let args = with("built:v2");
    let (code, out, err) = build(r, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!out.contains("Running in"), "all cached: {out}");
    assert_eq!(image_id(r, "built:v2"), first);
    // A copied file touched, its content the same: the cache keys content, not times.
    let touched = std::process::Command::new("touch")
        .args([
            "-d",
            "2001-01-01",
            ctx.path().join("two.txt").to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(touched.success());
    let args = with("built:touched");
    let (code, out, err) = build(r, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!out.contains("Running in"), "all cached: {out}");
    // A copied file changed: its step and every one after it run again.
    std::fs::write(ctx.path().join("two.txt"), "2, changed").unwrap();
    let args = with("built:v3");
    let (code, out, err) = build(r, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}\n{err}");
    let cached = out.matches(" ---> Using cache").count();
    assert_eq!(
        cached, 5,
        "ARG, ENV, WORKDIR and two COPYs before it: {out}"
    );
    assert_ne!(image_id(r, "built:v3"), first);
    // --no-cache runs everything; -q prints only the id.
    let (code, out, err) = build(r, &["-q", "--no-cache", "--target", "base", c]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.trim().starts_with("sha256:") && out.lines().count() == 1,
        "{out}"
    );

    // ONBUILD fires in an image built FROM this one.
    let child = context(&[("Dockerfile", "FROM built:v1\nRUN cat /triggered\n")]);
    let (code, out, err) = build(r, &["-t", "child", child.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("triggered"), "{out}");
}

#[test]
fn a_failing_build_names_the_step_and_tags_nothing() {
    let Some((_reg, root, img)) = busybox_store("a_failing_build_names_the_step", &[]) else {
        return;
    };
    let r = root.path();
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {img}\nRUN echo before > /before\nRUN echo failing; exit 3\nRUN echo after\n"
        ),
    )]);
    let c = ctx.path().to_str().unwrap();
    let (code, out, err) = build(r, &["-t", "broken", c]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("failing"), "the step's output is shown: {out}");
    assert!(err.contains("returned a non-zero code: 3"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_ne!(
        husk(r, &["image", "inspect", "broken"]).0,
        0,
        "nothing tagged"
    );
    assert_eq!(husk(r, &["ps", "-aq"]).1, "", "no container left");
    // The steps before it are cached.
    let (code, out, _) = build(r, &["-t", "broken", c]);
    assert_eq!(code, 1);
    assert_eq!(out.matches(" ---> Using cache").count(), 1, "{out}");

    // Bad input: one line each, exit 1.
    let cases = [
        (format!("FROM {img}\nRUN true\nBOGUS x\n"), "line 3"),
        (
            format!("FROM {img}\nCOPY ../outside /x\n"),
            "outside the build context",
        ),
        (format!("FROM {img}\nCOPY nosuch /x\n"), "nosuch"),
        (
            format!("FROM {img}\nADD http://example.com/x /x\n"),
            "remote",
        ),
        ("RUN true\n".to_string(), "FROM"),
    ];
    for (dockerfile, word) in cases {
        let ctx = context(&[("Dockerfile", &dockerfile)]);
        let (code, out, err) = build(r, &[ctx.path().to_str().unwrap()]);
        assert_eq!(code, 1, "{word}: {out}\n{err}");
        assert!(err.contains(word), "{word}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn a_context_symlink_never_copies_a_host_file_in() {
    let Some((_reg, root, img)) = busybox_store("a_context_symlink_never_copies", &[]) else {
        return;
    };
    let r = root.path();
    let ctx = context(&[("Dockerfile", &format!("FROM {img}\nCOPY link /got\n"))]);
    std::os::unix::fs::symlink("/etc/hostname", ctx.path().join("link")).unwrap();
    let (code, _, err) = build(r, &["-t", "leak", ctx.path().to_str().unwrap()]);
    assert_eq!(
        code, 1,
        "the link resolves inside the context, where nothing is: {err}"
    );
    assert!(err.contains("link"), "{err}");
    // A directory link: resolved inside the context too.
    let ctx = context(&[
        (
            "Dockerfile",
            &format!("FROM {img}\nCOPY up/etc/hostname /got\n"),
        ),
        ("etc/hostname", "the context's own"),
    ]);
    std::os::unix::fs::symlink("/", ctx.path().join("up")).unwrap();
    let (code, out, err) = build(r, &["-t", "leak2", ctx.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (_, out, _) = husk(r, &["run", "--rm", "leak2", "cat", "/got"]);
    assert_eq!(out, "the context's own");
    // Symlinks inside a copied directory stay symlinks.
    let ctx = context(&[
        ("Dockerfile", &format!("FROM {img}\nCOPY tree /tree\n")),
        ("tree/f", "f"),
    ]);
    std::os::unix::fs::symlink("/etc/shadow", ctx.path().join("tree/shadow")).unwrap();
    let (code, _, err) = build(r, &["-t", "leak3", ctx.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = husk(r, &["run", "--rm", "leak3", "readlink", "/tree/shadow"]);
    assert_eq!(out, "/etc/shadow\n");
}

#[test]
fn build_takes_its_context_as_a_tar_on_stdin() {
    use std::io::Write;
    let Some((_reg, root, img)) = busybox_store("build_takes_its_context_as_a_tar", &[]) else {
        return;
    };
    let r = root.path();
    let dockerfile = format!("FROM {img}\nCOPY hello /hello\nCMD [\"cat\", \"/hello\"]\n");
    let tar = support::layer(&[
        Entry::File("Dockerfile", dockerfile.as_bytes()),
        Entry::File("hello", b"from stdin\n"),
    ]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_husk"))
        .env("HUSK_CONFIG", no_bridge_config())
        .args([
            "--root",
            r.to_str().unwrap(),
            "build",
            "-q",
            "-t",
            "stdin:v1",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&support::gzip(&tar))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, out, err) = husk(r, &["run", "--rm", "stdin:v1"]);
    assert_eq!((code, out.as_str()), (0, "from stdin\n"), "{err}");
    // Nothing of the unpacked context is left in the store's scratch space.
    let left: Vec<_> = std::fs::read_dir(r.join("tmp"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn build_stores_its_layers_as_unpacked_directories_too() {
    let Some((_reg, root, img)) = busybox_store("build_stores_its_layers_as_directories", &[])
    else {
        return;
    };
    let r = root.path();
    let ctx = context(&[
        (
            "Dockerfile",
            &format!("FROM {img}\nRUN rm /etc/group && echo x > /x\nCOPY f /f\n"),
        ),
        ("f", "copied"),
    ]);
    let c = ctx.path().to_str().unwrap();
    let (code, out, err) = husk(
        r,
        &["--storage-driver", "overlay", "build", "-t", "dirs", c],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = husk(
        r,
        &[
            "--storage-driver",
            "overlay",
            "run",
            "--rm",
            "dirs",
            "sh",
            "-c",
            "cat /x /f; test -e /etc/group || echo gone",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "x\ncopiedgone\n"), "{err}");
    let (_, out, _) = husk(r, &["image", "inspect", "dirs"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let v = if v.is_array() { v[0].clone() } else { v };
    let layers = v["RootFS"]["Layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), 3, "busybox, RUN, COPY: {v}");
    for d in &layers[1..] {
        let hex = d.as_str().unwrap().trim_start_matches("sha256:");
        assert!(
            r.join("layers").join(hex).is_dir(),
            "the new layer {hex} is a directory"
        );
    }
    // Its whiteout is an overlayfs one there (a 0:0 character device).
    let run_layer = r
        .join("layers")
        .join(layers[1].as_str().unwrap().trim_start_matches("sha256:"));
    let meta = std::fs::symlink_metadata(run_layer.join("etc/group")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(meta.file_type().is_char_device() && meta.rdev() == 0);
}

#[test]
fn images_made_without_a_name_are_found_by_id_and_pruned() {
    let Some((_reg, root, img)) = busybox_store("images_made_without_a_name", &[]) else {
        return;
    };
    let r = root.path();
    let ctx = context(&[(
        "Dockerfile",
        &format!("FROM {img}\nRUN echo unnamed > /u\nCMD [\"cat\", \"/u\"]\n"),
    )]);
    let (code, out, err) = build(r, &["-q", ctx.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_string();
    let (code, out, err) = husk(r, &["run", "--rm", &id[7..19]]);
    assert_eq!((code, out.as_str()), (0, "unnamed\n"), "{err}");
    let (_, listed, _) = husk(r, &["images"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("<none>") && l.contains(&id[7..19])),
        "{listed}"
    );
    let (_, inspected, _) = husk(r, &["image", "inspect", &id]);
    let v: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    let v = if v.is_array() { v[0].clone() } else { v };
    assert_eq!(v["RepoTags"], serde_json::json!([]), "{v}");

    // commit without a name: the same.
    assert_eq!(
        husk(r, &["run", "--name", "c1", &img, "touch", "/committed"]).0,
        0
    );
    let (code, out, err) = husk(r, &["commit", "c1"]);
    assert_eq!(code, 0, "{err}");
    let committed = out.trim().to_string();
    assert_eq!(
        husk(r, &["run", "--rm", &committed, "ls", "/committed"]).1,
        "/committed\n"
    );
    // Tagged later, it is no longer listed as <none>.
    assert_eq!(husk(r, &["tag", &committed, "named:now"]).0, 0);
    let (_, listed, _) = husk(r, &["images"]);
    assert!(!listed.contains(&format!("<none>       <none>       {}", &committed[7..19])));
    assert_eq!(
        listed.matches(&committed[7..19]).count(),
        1,
        "one line, named: {listed}"
    );

    // image prune takes the untagged one nothing uses, and leaves the named ones.
    assert_eq!(husk(r, &["rm", "-f", "c1"]).0, 0);
    let (code, out, err) = husk(r, &["image", "prune"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("deleted: {id}")), "{out}");
    assert_ne!(husk(r, &["image", "inspect", &id]).0, 0);
    assert_eq!(husk(r, &["image", "inspect", "named:now"]).0, 0);
    assert_eq!(husk(r, &["image", "inspect", &img]).0, 0);
}
