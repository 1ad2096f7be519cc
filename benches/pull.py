#!/usr/bin/env python3
"""Cold pull of a debootstrap minbase image (~30 MB, ~4,000 files) from a local registry:
husk pull with each snapshotter (EROFS images, unpacked directories), skopeo copy + umoci
unpack, and podman pull, each into a fresh store every run.

The rootfs is made once with debootstrap and cached in /var/tmp/husk-bench/minbase. Run as
root. BENCH_RUNS sets the runs per tool (default 5). Leave five minutes after deleting many
files on this file system (a previous run of this bench deletes ~20,000 per round at its end):
ext4 creates files slowly meanwhile (see main), which slows every peer that unpacks files.
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from registry_util import Registry, unmount_under  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
CACHE = "/var/tmp/husk-bench/minbase"


def minbase():
    if not os.path.isdir(os.path.join(CACHE, "usr")):
        os.makedirs(os.path.dirname(CACHE), exist_ok=True)
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", CACHE, "http://deb.debian.org/debian"],
                       check=True, stdout=subprocess.DEVNULL)
        # The downloaded .debs and package lists are not part of an image.
        subprocess.run(["sh", "-c", f"rm -f {CACHE}/var/cache/apt/archives/*.deb; rm -rf {CACHE}/var/lib/apt/lists/*"],
                       check=True)
    out = subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", CACHE, "-cf", "-", "."],
                         check=True, stdout=subprocess.PIPE).stdout
    return out


def timed_interleaved(peers, stores):
    """One run of each peer per round, so that the machine's drift (and ext4's slow inode
    allocation for a while after a large deletion, see main) hits every peer alike.
    Returns {name: (times, None) or (None, error)}; stores[name] lists each peer's stores."""
    out = {name: ([], None) for name, _ in peers}
    for i in range(RUNS):
        for name, argv_for in peers:
            times, err = out[name]
            if times is None:
                continue
            d = tempfile.mkdtemp(prefix="pull-bench-", dir="/var/tmp")
            stores.setdefault(name, []).append(d)
            # Start every run with no dirty pages of the previous one still being written back.
            subprocess.run(["sync"])
            t = time.perf_counter()
            for c in argv_for(d):
                r = subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                if r.returncode != 0:
                    out[name] = (None, r.stderr.decode(errors="replace").strip().splitlines()[-1:])
                    break
            else:
                times.append(time.perf_counter() - t)
    return out


def tree(root):
    """path -> (mode, uid, gid, mtime, nlink, rdev, content digest) for everything under root."""
    import hashlib
    out = {}
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            p = os.path.join(dp, n)
            st = os.lstat(p)
            digest = ""
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            elif os.path.islink(p):
                digest = os.readlink(p)
            nlink = 0 if os.path.isdir(p) else st.st_nlink
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime), nlink, st.st_rdev, digest)
    return out


def compare(husk, erofs_store, dir_store, ref):
    """Mount the image from both stores and compare them entry by entry."""
    mounts = []
    try:
        for d in (erofs_store, dir_store):
            mounts.append(subprocess.run([husk, "--root", d, "image", "mount", ref], check=True,
                                         stdout=subprocess.PIPE, text=True).stdout.strip())
        a, b = tree(mounts[0]), tree(mounts[1])
        diff = [k for k in set(a) | set(b) if a.get(k) != b.get(k)]
        return f"identical ({len(a)} entries)" if not diff else f"DIFFER at {len(diff)} entries, e.g. {sorted(diff)[:3]}"
    finally:
        for d in (erofs_store, dir_store):
            subprocess.run([husk, "--root", d, "image", "unmount", ref], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


def remove_stores(stores):
    for d in (d for ds in stores.values() for d in ds):
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


def main():
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    husk = os.environ.get("HUSK", "target/release/husk")
    layer = minbase()
    files = subprocess.run(["sh", "-c", f"find {CACHE} | wc -l"], stdout=subprocess.PIPE).stdout.decode().strip()
    work = tempfile.mkdtemp(prefix="pull-bench-reg-", dir="/var/tmp")
    reg = Registry(work)
    stores = {}
    try:
        ref, gz_size = reg.push("bench/minbase", "latest", layer)
        print(f"cold pull of a debootstrap minbase image: {len(layer) / 1e6:.1f} MB tar, {gz_size / 1e6:.1f} MB gzip, "
              f"{files} files; {RUNS} rounds of one run each, interleaved, fresh store every run (median, s)")
        peers = [("husk erofs", lambda d: [[husk, "--root", d, "--storage-driver", "erofs", "pull", "-q", ref]]),
                 ("husk dirs", lambda d: [[husk, "--root", d, "--storage-driver", "overlay", "pull", "-q", ref]])]
        if shutil.which("skopeo") and shutil.which("umoci"):
            peers.append(("skopeo+umoci", lambda d: [
                ["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{d}/oci:latest"],
                ["umoci", "unpack", "--image", f"{d}/oci:latest", f"{d}/bundle"]]))
        if shutil.which("podman"):
            peers.append(("podman", lambda d: [["podman", "--root", f"{d}/root", "--runroot", f"{d}/run",
                                               "--storage-driver", "overlay", "pull", "-q", "--tls-verify=false", ref]]))
        results = {}
        # Stores are removed only at the end: ext4 skips inodes freed in the last minutes when it
        # allocates new ones (recently_deleted() in ialloc.c), scanning past each of them, so a run
        # that follows the deletion of a previous run's thousands of files pays ~0.7 ms per file
        # created for it, and the order of the peers would decide the result.
        for name, (t, err) in timed_interleaved(peers, stores).items():
            if t is None:
                print(f"  {name:14} failed: {' '.join(err)}")
                continue
            results[name] = statistics.median(t)
            print(f"  {name:14} median {results[name]:6.2f} s   min {min(t):6.2f} s")
        for husk_name in ("husk erofs", "husk dirs"):
            for name in ("skopeo+umoci", "podman"):
                if name in results and husk_name in results:
                    print(f"  {husk_name} / {name}: {results[husk_name] / results[name]:.2f}x")
        if "husk erofs" in results and "husk dirs" in results:
            # The first store of each husk peer: the image as each snapshotter shows it.
            print(f"  EROFS and directory layers: "
                  f"{compare(husk, stores['husk erofs'][0], stores['husk dirs'][0], ref)}")
    finally:
        remove_stores(stores)
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
