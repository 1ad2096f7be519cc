#!/usr/bin/env python3
"""`husk run --rm IMAGE true` against `podman run --rm` of the same busybox image.

husk runs with docker's default seccomp profile (as docker and podman do) and once more with
`--security-opt seccomp=unconfined`, to show what the filter costs. The rootless rows run husk
and podman (runc) as a user without root (`husk-bench`, made here with a subordinate range),
both with `--network none` and layers as directories. The network rows compare
husk's default bridge with `--network none`, and podman's default network (netavark's bridge)
with its `--network=none`; every run happens in a network namespace the bench makes, so the
bridges and their NAT rules never touch the host's own network.

Starts Debian's docker-registry on 127.0.0.1, pushes a busybox image built here, pulls it with
husk, imports the same rootfs into a throwaway podman store, then times both, one run after the
other, and prints medians and the ratio. Run as root.
"""
import io, os, shutil, statistics, subprocess, sys, tarfile, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from registry_util import Registry, unmount_under  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "30"))


def busybox_rootfs_tar():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev"):
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            t.addfile(ti)
        t.add("/bin/busybox", arcname="bin/busybox")
        for applet in ("sh", "true", "echo", "sleep"):
            ti = tarfile.TarInfo("bin/" + applet)
            ti.type = tarfile.SYMTYPE
            ti.linkname = "busybox"
            t.addfile(ti)
        data = b"root:x:0:0:root:/root:/bin/sh\n"
        ti = tarfile.TarInfo("etc/passwd")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


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


def timed_interleaved(argvs):
    """`timed` for several commands, one run of each per round. An entry may be
    (argv, extra environment)."""
    times = [[] for _ in argvs]
    for i in range(RUNS + 3):
        for k, argv in enumerate(argvs):
            env = None
            if isinstance(argv, tuple):
                argv, extra = argv
                env = dict(os.environ, **extra)
            t = time.perf_counter()
            r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            dt = (time.perf_counter() - t) * 1000
            if r.returncode != 0:
                return [(None, r.stderr.decode(errors="replace").strip().splitlines()[-1:])] * len(argvs)
            if i >= 3:
                times[k].append(dt)
    return [(t, None) for t in times]


def rootless_user(name="husk-bench"):
    """(uid, gid) of the bench's unprivileged user, made with a subordinate range if missing."""
    import pwd
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
        pw = pwd.getpwnam(name)
    for f, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        if not any(l.startswith(name + ":") for l in open(f)):
            subprocess.run(["usermod", flag, "620000-685535", name], check=True)
    return pw.pw_uid, pw.pw_gid


def kill_pid_file(path):
    try:
        os.kill(int(open(path).read().strip()), 9)
    except (OSError, ValueError):
        pass


def main():
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    husk = os.environ.get("HUSK", "target/release/husk")
    work = tempfile.mkdtemp(prefix="husk-run-bench-")
    reg = Registry(work)
    try:
        layer = busybox_rootfs_tar()
        image, _ = reg.push("bench/busybox", "latest", layer, compresslevel=1)
        hroot = os.path.join(work, "husk")
        subprocess.run([husk, "--root", hroot, "--storage-driver", "erofs", "pull", "-q", image], check=True,
                       stdout=subprocess.DEVNULL)
        droot = os.path.join(work, "husk-dirs")
        subprocess.run([husk, "--root", droot, "--storage-driver", "overlay", "pull", "-q", image], check=True,
                       stdout=subprocess.DEVNULL)
        # Its own store: a release without grace would unmount the layer the others keep up.
        sroot = os.path.join(work, "husk-no-grace")
        subprocess.run([husk, "--root", sroot, "--storage-driver", "erofs", "pull", "-q", image], check=True,
                       stdout=subprocess.DEVNULL)
        # From here on everything runs inside the bench's own network namespace.
        netns = f"husk-bench-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", netns], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        inside = ["nsenter", f"--net=/run/netns/{netns}"]
        results = {}
        print(f"run --rm <busybox> true, {RUNS} runs each (median / p90, wall ms)")
        # husk's defaults (EROFS layers kept mounted for the grace, docker's seccomp profile),
        # without the profile, with the image as directories, and with EROFS mounts released
        # at once: interleaved run by run, so the machine's drift hits all alike.
        none = ["--network", "none"]
        variants = [
            ("husk", inside + [husk, "--root", hroot, "run", "--rm", "--pull", "never"] + none + [image, "true"]),
            ("husk bridge", inside + [husk, "--root", hroot, "run", "--rm", "--pull", "never", image, "true"]),
            ("husk unconfined", inside + [husk, "--root", hroot, "run", "--rm", "--pull", "never",
                                          "--security-opt", "seccomp=unconfined"] + none + [image, "true"]),
            ("husk dirs", inside + [husk, "--root", droot, "run", "--rm", "--pull", "never"] + none + [image, "true"]),
            # EROFS with each layer unmounted as its last user goes (no grace): every run
            # mounts afresh and starts with a cold page cache.
            ("husk no grace", (inside + [husk, "--root", sroot, "run", "--rm", "--pull", "never"] + none
                               + [image, "true"], {"HUSK_LAYER_MOUNT_GRACE": "0"})),
        ]
        # Rootless: husk and podman as the bench user, in a home of its own.
        rl_home = None
        if shutil.which("newuidmap") and os.access(husk, os.X_OK):
            uid, gid = rootless_user()
            rl_home = tempfile.mkdtemp(prefix="husk-rl-bench-")
            os.makedirs(os.path.join(rl_home, "run"))
            for d in (rl_home, os.path.join(rl_home, "run")):
                os.chown(d, uid, gid)
                os.chmod(d, 0o700)
            tarpath_rl = os.path.join(rl_home, "rootfs.tar")
            open(tarpath_rl, "wb").write(layer)
            os.chown(tarpath_rl, uid, gid)
            as_user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
            rl_env = {"HOME": rl_home, "XDG_RUNTIME_DIR": os.path.join(rl_home, "run"), "USER": "husk-bench"}
            subprocess.run(as_user + [husk, "pull", "-q", image], check=True, stdout=subprocess.DEVNULL,
                           env=dict(os.environ, **rl_env))
            variants.append(("husk rootless", (inside + as_user + [husk, "run", "--rm", "--pull", "never"] + none
                                               + [image, "true"], rl_env)))
        peers = [(name, t, err) for name, (t, err) in zip([v[0] for v in variants],
                                                             timed_interleaved([v[1] for v in variants]))]
        if shutil.which("podman"):
            proot = os.path.join(work, "podman")
            pr = ["podman", "--root", proot, "--runroot", proot + "-run", "--storage-driver", "vfs",
                  "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc"]
            tarpath = os.path.join(work, "rootfs.tar")
            open(tarpath, "wb").write(layer)
            subprocess.run(pr + ["import", tarpath, "localhost/bench-busybox"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ulimits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
            both = timed_interleaved([
                inside + pr + ["run", "--rm", "--network=none"] + ulimits + ["localhost/bench-busybox", "true"],
                inside + pr + ["run", "--rm"] + ulimits + ["localhost/bench-busybox", "true"],
            ])
            peers.append(("podman+runc", *both[0]))
            peers.append(("podman bridge", *both[1]))
            if rl_home:
                upr = as_user + ["podman", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                                 "--events-backend", "file", "--runtime", "runc"]
                uenv = dict(os.environ, **rl_env)
                subprocess.run(upr + ["import", tarpath_rl, "localhost/bench-busybox"], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=uenv)
                rl = timed_interleaved([(inside + upr + ["run", "--rm", "--network=none"] + ulimits
                                         + ["localhost/bench-busybox", "true"], rl_env)])
                peers.append(("podman rootless", *rl[0]))
                subprocess.run(upr + ["system", "reset", "--force"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=uenv)
            subprocess.run(pr + ["system", "reset", "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            print("  podman        not installed: skipped")
        for name, times, err in peers:
            if times is None:
                print(f"  {name:16} failed: {' '.join(err)}")
                continue
            times.sort()
            results[name] = statistics.median(times)
            print(f"  {name:16} median {results[name]:7.2f} ms   p90 {times[int(len(times) * 0.9) - 1]:7.2f} ms")
        if "husk" in results and "podman+runc" in results:
            print(f"  ratio podman/husk: {results['podman+runc'] / results['husk']:.1f}x")
        if "husk" in results and "husk bridge" in results:
            print(f"  the default bridge costs husk: {results['husk bridge'] - results['husk']:+.2f} ms")
        if "husk bridge" in results and "podman bridge" in results:
            print(f"  ratio podman/husk on their default networks: "
                  f"{results['podman bridge'] / results['husk bridge']:.1f}x")
        if "husk" in results and "husk dirs" in results:
            print(f"  EROFS layers vs directories: {results['husk'] - results['husk dirs']:+.2f} ms")
        if "husk no grace" in results and "husk dirs" in results:
            print(f"  EROFS without the mount grace vs directories: "
                  f"{results['husk no grace'] - results['husk dirs']:+.2f} ms")
        if "husk rootless" in results and "husk dirs" in results:
            print(f"  rootless husk vs root's (both directories): "
                  f"{results['husk rootless'] / results['husk dirs']:.2f}x")
        if "husk rootless" in results and "podman rootless" in results:
            print(f"  ratio rootless podman/rootless husk: "
                  f"{results['podman rootless'] / results['husk rootless']:.1f}x")
        if "husk" in results and "husk unconfined" in results:
            print(f"  seccomp costs husk: {results['husk'] - results['husk unconfined']:+.2f} ms")
    finally:
        if locals().get("rl_home"):
            kill_pid_file(os.path.join(rl_home, "run/husk/pause.pid"))
            kill_pid_file(os.path.join(rl_home, "run/libpod/tmp/pause.pid"))
            shutil.rmtree(rl_home, ignore_errors=True)
        if "netns" in locals():
            subprocess.run(["ip", "netns", "del", netns], stderr=subprocess.DEVNULL)
        reg.stop()
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
