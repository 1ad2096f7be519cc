#!/usr/bin/env python3
"""Start-up time of `husk-runtime run` against runc (and crun where it runs) on /bin/true.

Each runtime runs the same busybox bundle (Debian's busybox-static) N times, one after the
other, each with its own throwaway state root; the script prints the median, p90 and the ratio
to husk-runtime. Run as root. Timings are the wall time of the whole `run` command, as a
caller (containerd, a CI script) sees it.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

RUNS = int(os.environ.get("BENCH_RUNS", "100"))
WARMUP = 5


def seccomp_profile():
    """A docker-sized allow-list (every syscall of this arch but a few dangerous ones), from the
    kernel headers; None where they are not installed."""
    header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
    if not os.path.exists(header):
        return None
    names = [l.split()[1][len("__NR_"):] for l in open(header) if l.startswith("#define __NR_")]
    denied = {"reboot", "kexec_load", "kexec_file_load", "init_module", "finit_module",
              "delete_module", "swapon", "swapoff", "mount", "umount2", "pivot_root"}
    return {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": sorted(set(names) - denied), "action": "SCMP_ACT_ALLOW"},
                         {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]}


def bundle(husk, seccomp=None):
    d = tempfile.mkdtemp(prefix="husk-bench-")
    rootfs = os.path.join(d, "rootfs")
    for sub in ("bin", "proc", "dev", "sys", "tmp"):
        os.makedirs(os.path.join(rootfs, sub))
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin/busybox"))
    os.symlink("busybox", os.path.join(rootfs, "bin/true"))
    subprocess.run([husk, "spec", "--bundle", d], check=True)
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    if seccomp is not None:
        cfg["linux"]["seccomp"] = seccomp
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    return d


def measure(name, argv_for):
    root = tempfile.mkdtemp(prefix=f"bench-{name}-")
    times = []
    try:
        for i in range(WARMUP + RUNS):
            argv = argv_for(root, f"b{i}")
            t = time.perf_counter()
            r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            dt = time.perf_counter() - t
            if r.returncode != 0:
                return None, r.stderr.decode(errors="replace").strip().splitlines()[-1:]
            if i >= WARMUP:
                times.append(dt * 1000)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return times, None


def main():
    if os.geteuid() != 0:
        sys.exit("bench: run as root (namespaces, mounts, cgroups)")
    husk = os.environ.get("HUSK_RUNTIME", "target/release/husk-runtime")
    profile = seccomp_profile()
    variants = [("no seccomp", bundle(husk))]
    if profile is not None:
        variants.append((f"seccomp, {len(profile['syscalls'][0]['names'])}-syscall allow-list", bundle(husk, profile)))
    for label, b in variants:
        peers = [
            ("husk-runtime", lambda root, cid: [husk, "--root", root, "run", "--bundle", b, cid]),
            ("runc", lambda root, cid: ["runc", "--root", root, "run", "--bundle", b, cid]),
            ("crun", lambda root, cid: ["crun", "--root", root, "run", "--bundle", b, cid]),
        ]
        results = {}
        print(f"run /bin/true ({label}), {RUNS} runs each (median / p90, wall ms)")
        for name, argv_for in peers:
            if name != "husk-runtime" and shutil.which(name) is None:
                print(f"  {name:13} not installed: skipped")
                continue
            times, err = measure(name, argv_for)
            if times is None:
                print(f"  {name:13} does not run here: {' '.join(err)}")
                continue
            times.sort()
            med, p90 = statistics.median(times), times[int(len(times) * 0.9) - 1]
            results[name] = med
            print(f"  {name:13} median {med:6.2f} ms   p90 {p90:6.2f} ms")
        base = results.get("husk-runtime")
        for name, med in results.items():
            if name != "husk-runtime" and base:
                print(f"  ratio {name}/husk-runtime: {med / base:.2f}x")
        shutil.rmtree(b, ignore_errors=True)


if __name__ == "__main__":
    main()
