#!/usr/bin/env python3
"""`husk build` against `buildah bud` (Debian's buildah, podman's builder) of the same
Dockerfile: a busybox base from a registry on 127.0.0.1, two RUN steps, a COPY of a small
tree and some settings.

Cold: every step runs (`husk build --no-cache`; buildah with `--layers` into a store that
has the base image but no build cache). Cached: the same build again, every step from the
cache. One run of each per round, interleaved. buildah runs its RUN steps with runc (Debian's
crun refuses this machine's hybrid cgroup layout) and its default OCI isolation; a row with
`--isolation chroot` (no container at all) is shown too. Run as root. BENCH_RUNS sets the
rounds (default 10).
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from registry_util import Registry, unmount_under  # noqa: E402
from run_start import busybox_rootfs_tar  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "10"))
HUSK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "husk")

DOCKERFILE = """FROM {image}
ENV GREETING=hello
RUN echo "$GREETING" > /hello && mkdir -p /app
COPY app/ /app/
RUN for i in 1 2 3 4 5 6 7 8 9 10; do echo $i > /app/n$i; done
WORKDIR /app
CMD ["cat", "/hello"]
"""


def run(argv, env=None):
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} {argv[1]}: " + r.stderr.decode(errors="replace").strip()[-300:])
    return dt


def main():
    if os.geteuid() != 0:
        sys.exit("run as root")
    if not shutil.which("buildah"):
        sys.exit("buildah is not installed (apt-get install buildah)")
    work = tempfile.mkdtemp(prefix="build-bench-", dir="/var/tmp")
    reg = Registry(work)
    try:
        image, _ = reg.push("bench/busybox", "latest", busybox_rootfs_tar())
        ctx = os.path.join(work, "ctx")
        os.makedirs(os.path.join(ctx, "app", "sub"))
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(DOCKERFILE.format(image=image))
        for i in range(20):
            with open(os.path.join(ctx, "app", "sub" if i % 2 else "", f"file{i}"), "w") as f:
                f.write("x" * 1000 * i)
        husk_root = os.path.join(work, "husk")
        cfg = os.path.join(work, "husk.json")
        with open(cfg, "w") as f:
            f.write('{"bridge": "none"}')
        henv = dict(os.environ, HUSK_CONFIG=cfg)
        run([HUSK, "--root", husk_root, "pull", "-q", image], henv)
        b_root, b_run = os.path.join(work, "buildah"), os.path.join(work, "buildah-run")
        storage = ["--root", b_root, "--runroot", b_run, "--storage-driver", "overlay"]
        run(["buildah", *storage, "pull", "--tls-verify=false", "-q", image])
        husk = [HUSK, "--root", husk_root, "build", "-q", "--network", "none", "-t", "bench:husk", ctx]
        bud = ["buildah", *storage, "bud", "--tls-verify=false", "-q", "--layers", "--runtime", "runc",
               "--network", "none", "-t", "bench:buildah", ctx]
        # chroot isolation has only the host's network.
        chroot = [a for a in bud[:-3] if a not in ("--network", "none")] + [
            "--isolation", "chroot", "-t", "bench:chroot", ctx]
        # The cold build runs both RUN steps in containers (not a cache it should not have).
        shown = subprocess.run(husk[:4] + ["--no-cache"] + husk[5:],
                               env=henv, capture_output=True, text=True, check=True).stdout
        assert shown.count("Running in") == 2, shown
        rows = {k: {"cold": [], "cached": []} for k in ("husk", "buildah", "buildah chroot")}
        for i in range(RUNS):
            rows["husk"]["cold"].append(run(husk[:5] + ["--no-cache"] + husk[5:], henv))
            rows["husk"]["cached"].append(run(husk, henv))
            for name, argv in (("buildah", bud), ("buildah chroot", chroot)):
                # No build cache: the last round's image, then its intermediate images, go.
                for cmd in (["rmi", "-f", "bench:buildah", "bench:chroot"], ["rm", "--all"],
                            ["rmi", "--prune"]):
                    subprocess.run(["buildah", *storage, *cmd], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
                rows[name]["cold"].append(run(argv))
                rows[name]["cached"].append(run(argv))
        print(f"build of a 7-step Dockerfile (busybox base, 2 RUN, 1 COPY), {RUNS} interleaved rounds, median seconds")
        print(f"{'':16} {'cold':>8} {'cached':>8}")
        med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in rows.items()}
        for k, m in med.items():
            print(f"{k:16} {m['cold']:8.3f} {m['cached']:8.3f}")
        for peer in ("buildah", "buildah chroot"):
            print(f"husk / {peer}: cold {med['husk']['cold'] / med[peer]['cold']:.2f}x, "
                  f"cached {med['husk']['cached'] / med[peer]['cached']:.2f}x")
        print(f"goals: cold <= 0.5x buildah's, cached <= 0.2 s (husk cached: {med['husk']['cached']:.3f} s)")
    finally:
        reg.stop()
        subprocess.run(["buildah", "--root", os.path.join(work, "buildah"), "--runroot",
                        os.path.join(work, "buildah-run"), "rm", "--all"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
