#!/usr/bin/env python3
"""Many detached containers at once: N `sleep` containers from one busybox image started with
`husk run -d` and with `podman run -d` (conmon + runc), one tool after the other, each into a
throwaway store. For each: the time to start all N, host memory per container (MemAvailable
before and after, divided by N) and the kernel's part of it (Slab, KernelStack, PageTables and
Percpu from /proc/meminfo), its monitor's RSS and PSS (husk's monitor, podman's conmon:
smaps_rollup), `ps` with N alive (median of 5); then `ps -a`, `stats --no-stream`, `inspect`
by name and by id prefix, `exec` and a `run --rm` beside them (median of 3); `rm -f` of all,
and what is left afterwards (processes, mounts).

BENCH_N sets the counts (default "100"; the issue's are "250,500,1000"); BENCH_TOOLS picks
"husk,podman". Run as root. podman runs with `--runtime runc` (Debian's crun refuses this
machine's hybrid cgroup layout), cgroupfs, no network, and the nofile and nproc ulimits at 1024 (its defaults ask for more than
this machine lets root set).
"""
import glob, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from registry_util import Registry, unmount_under  # noqa: E402
from run_start import busybox_rootfs_tar  # noqa: E402

HUSK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "husk")
COUNTS = [int(n) for n in os.environ.get("BENCH_N", "100").split(",")]
TOOLS = os.environ.get("BENCH_TOOLS", "husk,podman").split(",")


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])
    return out


def mem_available_kb():
    return meminfo().get("MemAvailable", 0)


# The kernel's own share of a container (namespaces, cgroups, mounts, its process's tables):
# what these grow by, per container.
KERNEL_FIELDS = ["Slab", "KernelStack", "PageTables", "Percpu"]


def rollup(pid):
    """(RSS, PSS) of a process in kB."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def pids_with(needle):
    """Processes whose command line contains `needle` (this bench's own store path)."""
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(d + "/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd:
            out.append((int(d[6:]), cmd))
    return out


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [l.split()[4] for l in f if l.split()[4].startswith(path)]


def run(argv, env=None):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if r.returncode != 0:
        raise RuntimeError(" ".join(argv[:6]) + ": " + r.stderr.decode(errors="replace").strip()[-300:])
    return r.stdout.decode()


def measure(tool, n, start, ps, remove, monitors, leftovers, queries):
    subprocess.run(["sync"])
    kernel_before = meminfo()
    before = mem_available_kb()
    t = time.perf_counter()
    for i in range(n):
        start(i)
    started = time.perf_counter() - t
    time.sleep(2)
    after = mem_available_kb()
    kernel_after = meminfo()
    kernel_kb = sum(kernel_after.get(k, 0) - kernel_before.get(k, 0) for k in KERNEL_FIELDS) / n
    mons = monitors()
    sizes = [rollup(p) for p in mons]
    ps_times = []
    for _ in range(5):
        t = time.perf_counter()
        out = ps()
        ps_times.append(time.perf_counter() - t)
    listed = len([l for l in out.splitlines() if l.strip()])
    # The other commands that must not grow with N: median of 3 each.
    timed = {}
    for label, q in queries.items():
        times = []
        for _ in range(3):
            t = time.perf_counter()
            q()
            times.append(time.perf_counter() - t)
        timed[label] = statistics.median(times) * 1000
    t = time.perf_counter()
    remove()
    removed = time.perf_counter() - t
    time.sleep(1)
    left = leftovers()
    return {
        "tool": tool, "n": n, "start_s": started, "host_kb_per": (before - after) / n,
        "kernel_kb_per": kernel_kb,
        "monitors": len(mons),
        "rss_kb": statistics.median([s[0] for s in sizes]) if sizes else 0,
        "pss_kb": statistics.median([s[1] for s in sizes]) if sizes else 0,
        "ps_ms": statistics.median(ps_times) * 1000, "listed": listed, "rm_s": removed, "left": left,
        "timed": timed,
    }


def main():
    if os.geteuid() != 0:
        sys.exit("run as root")
    work = tempfile.mkdtemp(prefix="density-bench-", dir="/var/tmp")
    reg = Registry(work)
    results = []
    try:
        image, _ = reg.push("bench/busybox", "latest", busybox_rootfs_tar())
        rootfs_tar = os.path.join(work, "rootfs.tar")
        with open(rootfs_tar, "wb") as f:
            f.write(busybox_rootfs_tar())
        cfg = os.path.join(work, "husk.json")
        with open(cfg, "w") as f:
            f.write('{"bridge": "none"}')
        henv = dict(os.environ, HUSK_CONFIG=cfg)
        for n in COUNTS:
            if "husk" in TOOLS:
                root = os.path.join(work, f"husk-{n}")
                h = [HUSK, "--root", root]
                run(h + ["pull", "-q", image], henv)
                results.append(measure(
                    "husk", n,
                    start=lambda i: run(h + ["run", "-d", "--name", f"d{i}", image, "sleep", "100000"], henv),
                    ps=lambda: run(h + ["ps", "-q"], henv),
                    remove=lambda: run(h + ["rm", "-f"] + [f"d{i}" for i in range(n)], henv),
                    monitors=lambda: [p for p, c in pids_with(root) if " run -d " in c],
                    leftovers=lambda: (len([p for p, c in pids_with(root) if "reap-layer-mounts" not in c]),
                                       len([m for m in mounts_under(root) if "/containers/" in m])),
                    queries={
                        "ps -a": lambda: run(h + ["ps", "-a"], henv),
                        "stats": lambda: run(h + ["stats", "--no-stream"], henv),
                        "inspect": lambda: run(h + ["inspect", f"d{n // 2}"], henv),
                        "by id prefix": lambda: run(h + ["inspect", "-f", "{{.Name}}",
                                                         run(h + ["ps", "-q", "-f", f"name=d{n // 3}$"], henv).strip()[:6]], henv),
                        "exec": lambda: run(h + ["exec", f"d{n // 2}", "true"], henv),
                        "run+rm": lambda: run(h + ["run", "--rm", image, "true"], henv),
                    },
                ))
            if "podman" in TOOLS and shutil.which("podman"):
                proot, prun = os.path.join(work, f"podman-{n}"), os.path.join(work, f"podman-run-{n}")
                p = ["podman", "--root", proot, "--runroot", prun, "--storage-driver", "overlay",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "none", "--runtime", "runc"]
                run(p + ["import", "-q", rootfs_tar, "bench-busybox"])
                results.append(measure(
                    "podman", n,
                    start=lambda i: run(p + ["run", "-d", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                                             "--name", f"d{i}", "bench-busybox", "sleep", "100000"]),
                    ps=lambda: run(p + ["ps", "-q"]),
                    remove=lambda: run(p + ["rm", "-f", "-t", "0", "-a"]),
                    monitors=lambda: [q for q, c in pids_with(prun) if c.startswith("/usr/bin/conmon")],
                    leftovers=lambda: (len([q for q, c in pids_with(prun)]),
                                       len([m for m in mounts_under(proot) if "/overlay/" in m and "merged" in m])),
                    queries={
                        "ps -a": lambda: run(p + ["ps", "-a"]),
                        "stats": lambda: run(p + ["stats", "--no-stream"]),
                        "inspect": lambda: run(p + ["inspect", f"d{n // 2}"]),
                        "by id prefix": lambda: run(p + ["inspect", "-f", "{{.Name}}",
                                                         run(p + ["ps", "-q", "-f", f"name=d{n // 3}$"]).strip()[:6]]),
                        "exec": lambda: run(p + ["exec", f"d{n // 2}", "true"]),
                        "run+rm": lambda: run(p + ["run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
                                                   "--ulimit", "nproc=1024:1024", "bench-busybox", "true"]),
                    },
                ))
        print(f"{'tool':7} {'N':>5} {'start all':>10} {'per start':>10} {'host/ctr':>9} {'kernel':>8} {'monitor RSS':>12} "
              f"{'PSS':>7} {'ps':>8} {'rm -f all':>10} {'left':>8}")
        for r in results:
            print(f"{r['tool']:7} {r['n']:5} {r['start_s']:9.2f}s {r['start_s'] / r['n'] * 1000:8.1f}ms "
                  f"{r['host_kb_per'] / 1024:7.2f}MB {r['kernel_kb_per'] / 1024:6.2f}MB "
                  f"{r['rss_kb'] / 1024:10.2f}MB {r['pss_kb'] / 1024:5.2f}MB "
                  f"{r['ps_ms']:6.1f}ms {r['rm_s']:9.2f}s {str(r['left']):>8}  (monitors {r['monitors']}, listed {r['listed']})")
        labels = list(results[0]["timed"]) if results else []
        print()
        print(f"{'tool':7} {'N':>5} " + " ".join(f"{l:>13}" for l in labels))
        for r in results:
            print(f"{r['tool']:7} {r['n']:5} " + " ".join(f"{r['timed'][l]:11.1f}ms" for l in labels))
        print()
        for n in COUNTS:
            h = [r for r in results if r["n"] == n and r["tool"] == "husk"]
            p = [r for r in results if r["n"] == n and r["tool"] == "podman"]
            if h and p:
                h, p = h[0], p[0]
                print(f"N={n}: husk / podman: start {h['start_s'] / p['start_s']:.2f}x, host memory per "
                      f"container {h['host_kb_per'] / max(p['host_kb_per'], 1):.2f}x, ps {h['ps_ms'] / p['ps_ms']:.2f}x")
    finally:
        reg.stop()
        # A run that failed midway leaves its containers: podman's go through podman (its
        # storage keeps a mount of its own), husk's through husk.
        for proot in glob.glob(os.path.join(work, "podman-[0-9]*")):
            prun = proot.replace("podman-", "podman-run-")
            subprocess.run(["podman", "--root", proot, "--runroot", prun, "--storage-driver", "overlay",
                            "--cgroup-manager", "cgroupfs", "--events-backend", "none", "--runtime", "runc",
                            "rm", "-f", "-a", "-t", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for root in glob.glob(os.path.join(work, "husk-[0-9]*")):
            ids = subprocess.run([HUSK, "--root", root, "ps", "-aq"], capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run([HUSK, "--root", root, "rm", "-f", *ids], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
