#!/usr/bin/env python3
"""A small real CI job through husk, podman and bubblewrap, against running it on the host.

The job compiles and runs a C hello-world kept in a workspace directory, offline: `cc` from the
host's own /usr, so every sandbox gets the same toolchain without an image to build. Each
sandbox gives it the same confinement: the host's root read-only (husk and podman through
`--rootfs /` under a layer of their own; bwrap with `--ro-bind / /`), the workspace mounted
read-write at /mnt (a directory the host's root has: bwrap cannot make one on a read-only
root), a tmpfs /tmp, no network, its own pid, ipc and uts namespaces. husk runs it
with `--rm --report` (the report written to a file), podman with `--rm` (runc, as this host
needs), bwrap with `--die-with-parent --unshare-all`. Rounds are interleaved (host, husk,
podman, bwrap, host, ...) so that the machine's noise falls on all alike; medians are
printed with each one's overhead over the host and the ratios.

The stores live on a tmpfs: overlayfs refuses an upper directory below its lower one (/).
Goal (issue 18): husk's overhead over the host at most 15 ms, and at least 10x less than
podman's. Run as root: ./bench ci
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

RUNS = int(os.environ.get("BENCH_RUNS", "20"))

HELLO = r"""#include <stdio.h>
int main(void) { puts("hello from the job"); return 0; }
"""
JOB = "cc -O1 -o /tmp/hello hello.c && /tmp/hello | grep -q 'hello from the job'"


def run(argv, cwd=None):
    t = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = (time.perf_counter() - t) * 1000
    if r.returncode != 0:
        tail = r.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise SystemExit(f"bench: {argv[0]} failed ({r.returncode}): {' | '.join(tail)}")
    return dt


def main():
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    husk = os.path.abspath(os.environ.get("HUSK", "target/release/husk"))
    tmp = tempfile.mkdtemp(prefix="husk-ci-bench-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "tmpfs", tmp], check=True)
    try:
        ws = os.path.join(tmp, "ws")
        os.makedirs(ws)
        with open(os.path.join(ws, "hello.c"), "w") as f:
            f.write(HELLO)
        host_tmp = os.path.join(tmp, "host-tmp")
        os.makedirs(host_tmp)
        husk_root = os.path.join(tmp, "husk")
        report = os.path.join(tmp, "report.json")
        podman_root = os.path.join(tmp, "podman")
        cmds = {
            "host": ["sh", "-c", JOB.replace("/tmp/", host_tmp + "/")],
            "husk": [husk, "--root", husk_root, "run", "--rm", "--report=json",
                     "--report-file", report, "--network", "none", "--read-only",
                     "--tmpfs", "/tmp:exec", "-v", f"{ws}:/mnt", "-w", "/mnt", "--rootfs", "/",
                     "sh", "-c", JOB],
        }
        if shutil.which("podman"):
            cmds["podman"] = ["podman", "--root", podman_root, "--runroot",
                              os.path.join(tmp, "podman-run"), "--runtime", "runc",
                              "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                              "--network", "none", "--read-only", "--read-only-tmpfs=false",
                              "--tmpfs", "/tmp:exec,notmpcopyup",
                              "-v", f"{ws}:/mnt", "-w", "/mnt", "--rootfs", "/:O", "sh", "-c", JOB]
        else:
            print("bench: no podman; its row is left out")
        if shutil.which("bwrap"):
            cmds["bwrap"] = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                             "--tmpfs", "/tmp", "--bind", ws, "/mnt", "--chdir", "/mnt",
                             "--unshare-all", "--die-with-parent", "sh", "-c", JOB]
        else:
            print("bench: no bwrap (Debian's bubblewrap); its row is left out")
        times = {k: [] for k in cmds}
        for i in range(RUNS + 2):
            for k, argv in cmds.items():
                dt = run(argv, cwd=ws if k == "host" else None)
                if i >= 2:
                    times[k].append(dt)
        med = {k: statistics.median(v) for k, v in times.items()}
        host = med["host"]
        print(f"the job (cc + run a C hello-world), median of {RUNS} interleaved rounds:")
        for k, m in med.items():
            over = "" if k == "host" else f"  overhead {m - host:+7.1f} ms"
            print(f"  {k:7} {m:8.1f} ms{over}")
        h = med["husk"] - host
        print(f"husk's overhead: {h:.1f} ms (goal: at most 15 ms)")
        for k in ("podman", "bwrap"):
            if k in med:
                o = med[k] - host
                ratio = o / h if h > 0 else float("inf")
                print(f"{k}'s overhead / husk's: {ratio:.1f}x")
    finally:
        for path in (os.path.join(tmp, "husk"), os.path.join(tmp, "podman")):
            subprocess.run(["umount", "-R", "-l", path], stderr=subprocess.DEVNULL)
        subprocess.run(["umount", "-l", tmp], stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
