#!/usr/bin/env python3
"""`husk run --rm IMAGE true` against `podman run --rm` of the same busybox image.

Starts Debian's docker-registry on 127.0.0.1, pushes a busybox image built here, pulls it with
husk, imports the same rootfs into a throwaway podman store, then times both, one run after the
other, and prints medians and the ratio. Run as root.
"""
import gzip, hashlib, io, json, os, shutil, socket, statistics, subprocess, sys, tarfile, tempfile, time
import urllib.request

RUNS = int(os.environ.get("BENCH_RUNS", "30"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def busybox_rootfs_tar():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev"):
            ti = tarfile.TarInfo(d); ti.type = tarfile.DIRTYPE; ti.mode = 0o755; t.addfile(ti)
        t.add("/bin/busybox", arcname="bin/busybox")
        for applet in ("sh", "true", "echo"):
            ti = tarfile.TarInfo("bin/" + applet); ti.type = tarfile.SYMTYPE; ti.linkname = "busybox"; t.addfile(ti)
        data = b"root:x:0:0:root:/root:/bin/sh\n"
        ti = tarfile.TarInfo("etc/passwd"); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def push(port, repo, layer):
    base = f"http://127.0.0.1:{port}/v2/{repo}"

    def blob(data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        r = urllib.request.urlopen(urllib.request.Request(base + "/blobs/uploads/", method="POST"))
        loc = r.headers["Location"]
        loc = loc if loc.startswith("http") else f"http://127.0.0.1:{port}{loc}"
        sep = "&" if "?" in loc else "?"
        urllib.request.urlopen(urllib.request.Request(f"{loc}{sep}digest={d}", data=data, method="PUT",
                                                      headers={"Content-Type": "application/octet-stream"}))
        return d, len(data)

    gz = gzip.compress(layer, compresslevel=1)
    ld, ls = blob(gz)
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    cfg = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
    cd, cs = blob(cfg)
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}]}).encode()
    urllib.request.urlopen(urllib.request.Request(base + "/manifests/latest", data=m, method="PUT",
                                                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}))


def timed(argv):
    times = []
    for i in range(RUNS + 3):
        t = time.perf_counter()
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dt = (time.perf_counter() - t) * 1000
        if r.returncode != 0:
            return None, r.stderr.decode(errors="replace").strip().splitlines()[-1:]
        if i >= 3:
            times.append(dt)
    return times, None


def main():
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    husk = os.environ.get("HUSK", "target/release/husk")
    work = tempfile.mkdtemp(prefix="husk-run-bench-")
    port = free_port()
    cfg = os.path.join(work, "registry.yml")
    open(cfg, "w").write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {work}/registry\nhttp:\n  addr: 127.0.0.1:{port}\n")
    reg = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        layer = busybox_rootfs_tar()
        push(port, "bench/busybox", layer)
        image = f"127.0.0.1:{port}/bench/busybox:latest"
        hroot = os.path.join(work, "husk")
        subprocess.run([husk, "--root", hroot, "pull", "-q", image], check=True, stdout=subprocess.DEVNULL)
        results = {}
        print(f"run --rm <busybox> true, {RUNS} runs each (median / p90, wall ms)")
        t, err = timed([husk, "--root", hroot, "run", "--rm", "--pull", "never", image, "true"])
        peers = [("husk", t, err)]
        if shutil.which("podman"):
            proot = os.path.join(work, "podman")
            pr = ["podman", "--root", proot, "--runroot", proot + "-run", "--storage-driver", "vfs",
                  "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc"]
            tarpath = os.path.join(work, "rootfs.tar")
            open(tarpath, "wb").write(layer)
            subprocess.run(pr + ["import", tarpath, "localhost/bench-busybox"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t2, err2 = timed(pr + ["run", "--rm", "--network=none", "--ulimit", "nofile=1024:1024",
                                   "--ulimit", "nproc=1024:1024", "localhost/bench-busybox", "true"])
            peers.append(("podman+runc", t2, err2))
            subprocess.run(pr + ["system", "reset", "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            print("  podman        not installed: skipped")
        for name, times, err in peers:
            if times is None:
                print(f"  {name:13} failed: {' '.join(err)}")
                continue
            times.sort()
            results[name] = statistics.median(times)
            print(f"  {name:13} median {results[name]:7.2f} ms   p90 {times[int(len(times) * 0.9) - 1]:7.2f} ms")
        if "husk" in results and "podman+runc" in results:
            print(f"  ratio podman/husk: {results['podman+runc'] / results['husk']:.1f}x")
    finally:
        reg.kill()
        reg.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
