//! A real caller: containerd 1.6 (Debian's) drives husk-runtime through its runc shim, as
//! Kubernetes nodes do: `ctr run --runc-binary`, and the CRI API with a RuntimeClass handler
//! whose `BinaryName` is husk-runtime (runtime/tests/cri.py is the CRI client). Each test starts
//! its own containerd in a throwaway root and imports a busybox image built here.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Root, and containerd and ctr installed (.ci/run installs them); else say why not.
fn require_containerd(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    for tool in ["containerd", "ctr"] {
        if which(tool).is_none() {
            println!("SKIP {test}: {tool} is not installed (Debian's containerd package)");
            return false;
        }
    }
    true
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|f| f.is_file())
    })
}

/// Whether the capability bounding set has CAP_SYS_RESOURCE (bit 24).
fn has_cap_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|bits| bits & (1 << 24) != 0)
}

const NAMESPACE: &str = "husktest";
/// The CRI plugin's own namespace: images the CRI API runs must be there.
const CRI_NAMESPACE: &str = "k8s.io";
pub const IMAGE: &str = "docker.io/library/huskbox:latest";

/// One containerd daemon, its root, state and sockets in a temporary directory.
struct Containerd {
    dir: tempfile::TempDir,
    daemon: Child,
}

impl Containerd {
    /// Start containerd; with `cri`, its CRI plugin with a `husk` runtime handler (and
    /// `systemd_cgroup` for it), else without the CRI plugin.
    fn start(cri: bool, systemd_cgroup: bool) -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("husk-containerd-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        for sub in ["cni-bin", "cni-conf"] {
            fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let mut config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
# The log is printed only when a test fails: with the shims' own lines.
[debug]
  level = "debug"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
        );
        if cri {
            config.push_str(&format!(
                r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  disable_apparmor = true
  restrict_oom_score_adj = {restrict}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
  # The default runtime cannot run anything: only the RuntimeClass handler "husk" can.
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      BinaryName = "/nonexistent/runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.husk]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.husk.options]
      BinaryName = "{bin}"
      Root = "{runtime_root}"
      SystemdCgroup = {systemd_cgroup}
"#,
                // The sandbox's oom_score_adj (-998) needs CAP_SYS_RESOURCE, which some hosts
                // withhold even from root (this project's VMs): there, containerd's own knob
                // keeps it at containerd's, as for rootless nodes, and runc would fail alike.
                restrict = !has_cap_sys_resource(),
                cni_bin = d.join("cni-bin").display(),
                cni_conf = d.join("cni-conf").display(),
                bin = bin(),
                runtime_root = d.join("husk-runtime").display(),
            ));
        } else {
            config.push_str("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n");
            // TOML: a top-level key after a table belongs to the table; keep it first.
            config = format!(
                "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n{}",
                config.replace("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n", "")
            );
        }
        fs::write(d.join("config.toml"), config).expect("config.toml");
        let log = fs::File::create(d.join("containerd.log")).expect("log");
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let c = Containerd { dir, daemon };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if c.ctr(&["version"]).status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr_in(&self, namespace: &str, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", namespace])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr")
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_in(NAMESPACE, args)
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed: {}{}",
            text(&out.stderr),
            text(&out.stdout)
        );
        text(&out.stdout)
    }

    /// `ctr run` with husk-runtime as the shim's runc.
    fn run(&self, extra: &[&str], id: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["run", "--runc-binary", bin()];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.push(id);
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    /// Import the busybox image into `namespace`.
    fn import_image(&self, namespace: &str) {
        let archive = self.dir.path().join("huskbox.tar");
        if !archive.exists() {
            build_image_archive(&archive);
        }
        let out = self.ctr_in(
            namespace,
            &["images", "import", archive.to_str().expect("utf-8")],
        );
        assert!(out.status.success(), "import: {}", text(&out.stderr));
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for ns in [NAMESPACE, CRI_NAMESPACE] {
            let tasks = text(&self.ctr_in(ns, &["tasks", "ls", "-q"]).stdout);
            for t in tasks.lines() {
                let _ = self.ctr_in(ns, &["tasks", "kill", "-s", "KILL", t]);
                let _ = self.ctr_in(ns, &["tasks", "delete", "-f", t]);
            }
            let containers = text(&self.ctr_in(ns, &["containers", "ls", "-q"]).stdout);
            for c in containers.lines() {
                let _ = self.ctr_in(ns, &["containers", "delete", c]);
            }
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.daemon.wait();
        // The parents of the containers' cgroups (cgroupsPath /NAMESPACE/ID), left by the runtime
        // as runc leaves them.
        for ns in [NAMESPACE, CRI_NAMESPACE] {
            remove_empty_cgroup(ns);
        }
        // Snapshot mounts and the shims' shm mounts live under the root: unmount before the
        // directory goes.
        let dir = self.dir.path().to_path_buf();
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn sha256_file(p: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    text(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// An OCI image layout archive of one busybox layer, `IMAGE` by name, sleeping by default (so it
/// serves as the CRI sandbox image too).
fn build_image_archive(archive: &Path) {
    let b = Bundle::new(&["true"]);
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("mkdir");
    let layer = work.path().join("layer.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(b.rootfs())
        .arg("--owner=0")
        .arg("--group=0")
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let put = |bytes: &[u8]| -> (String, usize) {
        let tmp = work.path().join("blob");
        fs::write(&tmp, bytes).expect("write blob");
        let d = sha256_file(&tmp);
        fs::rename(&tmp, blobs.join(&d)).expect("rename blob");
        (d, bytes.len())
    };
    let (layer_digest, layer_size) = put(&fs::read(&layer).expect("layer"));
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sleep", "86400"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]}
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).expect("json"));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{config_digest}"), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{layer_digest}"), "size": layer_size}]
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).expect("json"));
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": IMAGE,
                            "org.opencontainers.image.ref.name": "latest"}
        }]
    });
    fs::write(layout.join("index.json"), index.to_string()).expect("index");
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(archive)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
}

#[test]
fn ctr_runs_containers_with_husk_runtime() {
    if !require_containerd("ctr_runs_containers_with_husk_runtime") {
        return;
    }
    let c = Containerd::start(false, false);
    c.import_image(NAMESPACE);

    // Attached: output and the exit code come back through the shim.
    let out = c.run(
        &["--rm"],
        &unique_id("ctr"),
        &["sh", "-c", "echo hello; exit 3"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");

    // Detached: exec, ps, pause/resume, kill, delete.
    let id = unique_id("ctrd");
    let out = c.run(&["-d"], &id, &["sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exec = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo in; exit 5",
    ]);
    assert_eq!(exec.status.code(), Some(5), "{}", text(&exec.stderr));
    assert_eq!(text(&exec.stdout), "in\n");
    let ps = c.ctr_ok(&["tasks", "ps", &id]);
    assert!(ps.lines().count() >= 2, "{ps}");
    c.ctr_ok(&["tasks", "pause", &id]);
    assert!(c.ctr_ok(&["tasks", "ls"]).contains("PAUSED"));
    c.ctr_ok(&["tasks", "resume", &id]);
    assert!(c.ctr_ok(&["tasks", "ls"]).contains("RUNNING"));
    c.ctr_ok(&["tasks", "kill", "-s", "KILL", &id]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.ctr_ok(&["tasks", "ls"]).contains("STOPPED") {
        assert!(Instant::now() < deadline, "the task never stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.ctr_ok(&["tasks", "delete", &id]);
    c.ctr_ok(&["containers", "delete", &id]);
}

#[test]
fn ctr_reports_a_missing_command_at_create_with_its_reason() {
    if !require_containerd("ctr_reports_a_missing_command_at_create_with_its_reason") {
        return;
    }
    let c = Containerd::start(false, false);
    c.import_image(NAMESPACE);
    let id = unique_id("ctrmissing");
    let out = c.run(&["--rm"], &id, &["/no/such/command"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("/no/such/command") && err.contains("No such file"),
        "{err}"
    );
    // Nothing of it is left to the runtime: its root under containerd's state is empty.
    assert!(c.ctr_ok(&["tasks", "ls", "-q"]).trim().is_empty());
}

#[test]
fn ctr_limits_and_oom_reach_the_container() {
    if !require_containerd("ctr_limits_and_oom_reach_the_container") {
        return;
    }
    let c = Containerd::start(false, false);
    c.import_image(NAMESPACE);
    // ctr's spec gives the container no cgroupfs: read the limit from the host, through the
    // cgroup the kernel says the task's init is in.
    let id = unique_id("ctrmem");
    let out = c.run(
        &["-d", "--memory-limit", "67108864"],
        &id,
        &["sleep", "1000"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tasks = c.ctr_ok(&["tasks", "ls"]);
    let pid = tasks
        .lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("the task's pid");
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("its cgroup");
    let file = if is_cgroup_v2() {
        let rel = cgroups
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("v2 line");
        format!("/sys/fs/cgroup{rel}/memory.max")
    } else {
        let rel = cgroups
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p))
            .expect("memory line");
        format!("/sys/fs/cgroup/memory{rel}/memory.limit_in_bytes")
    };
    assert_eq!(
        fs::read_to_string(&file).expect("the limit").trim(),
        "67108864"
    );
    c.ctr_ok(&["tasks", "kill", "-s", "KILL", &id]);
    let out = c.run(
        &["--rm", "--memory-limit", "33554432"],
        &unique_id("ctroom"),
        &[
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stdout));
}

/// What `runtime/tests/cri.py` answers for one CRI call: the response, or the gRPC error.
fn cri(c: &Containerd, method: &str, request: Value) -> Result<Value, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cri.py");
    // Debian's python, which has python3-grpcio.
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(c.socket())
        .arg(method)
        .arg(request.to_string())
        .output()
        .expect("python3");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("the CRI response as JSON"))
    } else {
        Err(text(&out.stderr))
    }
}

fn cri_ok(c: &Containerd, method: &str, request: Value) -> Value {
    cri(c, method, request.clone())
        .unwrap_or_else(|e| panic!("CRI {method} {request} failed: {e}\n{}", c.log()))
}

fn pod_config(name: &str, log_dir: &Path, cgroup_parent: &str) -> Value {
    json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "namespace": "default"},
        "log_directory": log_dir.to_str().expect("utf-8"),
        // The node's network: no CNI plugin is called (networking is issue 15's).
        "linux": {"cgroup_parent": cgroup_parent,
                  "security_context": {"namespace_options": {"network": "NODE"}}}
    })
}

fn container_config(name: &str, command: &[&str], resources: Value) -> Value {
    json!({
        "metadata": {"name": name},
        "image": {"image": IMAGE},
        "command": command,
        "log_path": format!("{name}.log"),
        "linux": {"resources": resources,
                  "security_context": {"seccomp": {"profile_type": "RuntimeDefault"}}}
    })
}

/// A CRI pod on the `husk` runtime class: (containerd, pod id, pod config, log dir).
fn cri_pod(
    name: &str,
    systemd_cgroup: bool,
    cgroup_parent: &str,
) -> (Containerd, String, Value, tempfile::TempDir) {
    let c = Containerd::start(true, systemd_cgroup);
    c.import_image(CRI_NAMESPACE);
    let version = cri_ok(&c, "Version", json!({"version": "v1"}));
    assert_eq!(version["runtime_name"], "containerd", "{version}");
    let logs = tempfile::tempdir().expect("tempdir");
    let pod = pod_config(name, logs.path(), cgroup_parent);
    let id = cri_ok(
        &c,
        "RunPodSandbox",
        json!({"config": pod, "runtime_handler": "husk"}),
    )["pod_sandbox_id"]
        .as_str()
        .expect("a pod id")
        .to_string();
    // The RuntimeClass's BinaryName runs it: husk-runtime's root has the sandbox.
    let state = c
        .dir
        .path()
        .join("husk-runtime")
        .join(CRI_NAMESPACE)
        .join(&id)
        .join("state.json");
    assert!(
        state.exists(),
        "{} is missing: husk-runtime did not run the pod",
        state.display()
    );
    (c, id, pod, logs)
}

fn create_container(c: &Containerd, pod: &str, pod_config: &Value, config: Value) -> String {
    cri_ok(
        c,
        "CreateContainer",
        json!({"pod_sandbox_id": pod, "config": config, "sandbox_config": pod_config}),
    )["container_id"]
        .as_str()
        .expect("a container id")
        .to_string()
}

/// Remove container `id`, then stop and remove its pod.
fn remove_pod(c: &Containerd, id: &str, pod: &str) {
    cri_ok(c, "RemoveContainer", json!({"container_id": id}));
    cri_ok(c, "StopPodSandbox", json!({"pod_sandbox_id": pod}));
    cri_ok(c, "RemovePodSandbox", json!({"pod_sandbox_id": pod}));
}

fn status(c: &Containerd, id: &str) -> Value {
    cri_ok(c, "ContainerStatus", json!({"container_id": id}))["status"].clone()
}

fn wait_exited(c: &Containerd, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = status(c, id);
        if st["state"] == "CONTAINER_EXITED" {
            return st;
        }
        assert!(Instant::now() < deadline, "container never exited: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn exec_sync(c: &Containerd, id: &str, cmd: &[&str]) -> Value {
    cri_ok(
        c,
        "ExecSync",
        json!({"container_id": id, "cmd": cmd, "timeout": 120}),
    )
}

fn memory_file() -> &'static str {
    if is_cgroup_v2() {
        "/sys/fs/cgroup/memory.max"
    } else {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    }
}

#[test]
fn cri_runs_a_pod_with_the_husk_runtime_class() {
    if !require_containerd("cri_runs_a_pod_with_the_husk_runtime_class") {
        return;
    }
    let (c, pod, pod_config, logs) = cri_pod("web", false, "");
    let config = container_config(
        "app",
        &["sh", "-c", "echo started; exec sleep 1000"],
        json!({"memory_limit_in_bytes": 67108864}),
    );
    let id = create_container(&c, &pod, &pod_config, config);
    cri_ok(&c, "StartContainer", json!({"container_id": id}));
    assert_eq!(status(&c, &id)["state"], "CONTAINER_RUNNING");

    // ExecSync: output and exit codes come back; RuntimeDefault seccomp is on; the limit holds.
    let r = exec_sync(
        &c,
        &id,
        &[
            "sh",
            "-c",
            &format!("grep ^Seccomp: /proc/self/status; cat {}", memory_file()),
        ],
    );
    assert_eq!(r["exit_code"].as_i64().unwrap_or(0), 0, "{r}");
    let out = r["stdout"].as_str().unwrap_or_default().to_string();
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("67108864"), "{out}");
    let r = exec_sync(&c, &id, &["sh", "-c", "echo err >&2; exit 7"]);
    assert_eq!(
        (r["exit_code"].as_i64(), r["stderr"].as_str()),
        (Some(7), Some("err\n")),
        "{r}"
    );

    // UpdateContainerResources reaches the cgroup.
    cri_ok(
        &c,
        "UpdateContainerResources",
        json!({"container_id": id, "linux": {"memory_limit_in_bytes": 134217728}}),
    );
    let r = exec_sync(&c, &id, &["cat", memory_file()]);
    assert_eq!(
        r["stdout"].as_str().map(str::trim),
        Some("134217728"),
        "{r}"
    );

    // The container's output is in its CRI log file.
    let log = fs::read_to_string(logs.path().join("app.log")).unwrap_or_default();
    assert!(log.contains(" stdout F started"), "{log}");

    // StopContainer: the pod's containers share the sandbox's pid namespace, so sleep is not
    // PID 1 and dies of the SIGTERM.
    cri_ok(
        &c,
        "StopContainer",
        json!({"container_id": id, "timeout": 60}),
    );
    let st = wait_exited(&c, &id);
    assert_eq!(st["exit_code"], 143, "{st}");
    remove_pod(&c, &id, &pod);
    let left: Vec<_> = fs::read_dir(c.dir.path().join("husk-runtime").join(CRI_NAMESPACE))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "husk-runtime state left: {left:?}");
}

#[test]
fn cri_start_of_a_missing_command_fails_with_the_reason() {
    if !require_containerd("cri_start_of_a_missing_command_fails_with_the_reason") {
        return;
    }
    let (c, pod, pod_config, _logs) = cri_pod("broken", false, "");
    let config = container_config("app", &["/no/such/command"], json!({}));
    let id = create_container(&c, &pod, &pod_config, config);
    let err = cri(&c, "StartContainer", json!({"container_id": id})).expect_err("start fails");
    assert!(err.contains("/no/such/command"), "{err}");
    assert!(err.to_lowercase().contains("no such file"), "{err}");
    let st = status(&c, &id);
    assert_ne!(st["state"], "CONTAINER_RUNNING", "{st}");
    remove_pod(&c, &id, &pod);
}

#[test]
fn cri_reports_an_oom_kill() {
    if !require_containerd("cri_reports_an_oom_kill") {
        return;
    }
    let (c, pod, pod_config, _logs) = cri_pod("hog", false, "");
    let config = container_config(
        "hog",
        &[
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        ],
        json!({"memory_limit_in_bytes": 33554432, "memory_swap_limit_in_bytes": 33554432}),
    );
    let id = create_container(&c, &pod, &pod_config, config);
    cri_ok(&c, "StartContainer", json!({"container_id": id}));
    let st = wait_exited(&c, &id);
    assert_eq!(
        (st["exit_code"].as_i64(), st["reason"].as_str()),
        (Some(137), Some("OOMKilled")),
        "{st}"
    );
    remove_pod(&c, &id, &pod);
}

#[test]
fn cri_with_systemd_cgroup_puts_containers_in_scopes_of_the_pod_slice() {
    if !require_containerd("cri_with_systemd_cgroup_puts_containers_in_scopes_of_the_pod_slice") {
        return;
    }
    if !Path::new("/run/systemd/system").is_dir() {
        println!("SKIP cri_with_systemd_cgroup_puts_containers_in_scopes_of_the_pod_slice: systemd is not this machine's init (the kernel matrix boots it)");
        return;
    }
    let slice = "husk-pod1.slice";
    let (c, pod, pod_config, _logs) = cri_pod("sd", true, slice);
    // It ignores SIGTERM: StopContainer gets to its SIGKILL.
    let config = container_config(
        "app",
        &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
        json!({"memory_limit_in_bytes": 67108864}),
    );
    let id = create_container(&c, &pod, &pod_config, config);
    cri_ok(&c, "StartContainer", json!({"container_id": id}));
    let unit = format!("cri-containerd-{id}.scope");
    let show = |prop: &str| {
        text(
            &Command::new("systemctl")
                .args(["show", "-P", prop, &unit])
                .output()
                .expect("systemctl")
                .stdout,
        )
        .trim()
        .to_string()
    };
    assert_eq!(show("ActiveState"), "active");
    assert_eq!(show("Slice"), slice);
    assert_eq!(show("ControlGroup"), format!("/husk.slice/{slice}/{unit}"));
    let memory = if is_cgroup_v2() {
        "MemoryMax"
    } else {
        "MemoryLimit"
    };
    assert_eq!(show(memory), "67108864");
    // A second container that dies of the SIGTERM, while the first needs the SIGKILL.
    let quick = create_container(
        &c,
        &pod,
        &pod_config,
        container_config("quick", &["sleep", "1000"], json!({})),
    );
    cri_ok(&c, "StartContainer", json!({"container_id": quick}));
    // The one that dies of the SIGTERM gets a timeout it cannot outlast: containerd 1.6 races
    // its own exit handling (delete, then shim shutdown) against the stop's SIGKILL once a
    // timeout expires meanwhile, and fails the stop with "ttrpc: closed", with runc as well.
    for (stop, timeout) in [(&quick, 60), (&id, 1)] {
        cri_ok(
            &c,
            "StopContainer",
            json!({"container_id": stop, "timeout": timeout}),
        );
        wait_exited(&c, stop);
    }
    cri_ok(&c, "RemoveContainer", json!({"container_id": quick}));
    remove_pod(&c, &id, &pod);
    assert_eq!(show("LoadState"), "not-found");
}
