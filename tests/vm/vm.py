#!/usr/bin/env python3
"""Boot one of Debian's stock kernels in QEMU (TCG) with pure cgroup v2 and run a command in it.

The guest sees this machine's whole file system: its root is an overlay of the host's `/`
(read-only over virtio-9p) under a tmpfs, so the binaries and test executables built here run
unchanged. /tmp, /run, /var/tmp and /var/lib/husk are tmpfs of their own, because an overlayfs
upper directory (a container's) cannot live on overlayfs. The kernel's modules are reachable at
/lib/modules/<release> inside the guest, so modprobe and the kernel's own module loading work.

    tests/vm/vm.py [--kernel 5.10|6.1|6.12] [--mem MiB] [--cpus N] [--timeout S] [--cwd DIR]
                   [--init tini|systemd] [--cgroup v2|v1] -- CMD...
    tests/vm/vm.py --fetch-only --kernel 6.1

Prints the command's output as it runs and exits with the command's exit code (125 when the
VM itself failed: no kernel, no boot, a timeout).
"""

import argparse
import glob
import gzip
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# The kernel series of the matrix: the Debian release whose archive has each one.
SERIES = {"5.10": "bullseye", "6.1": "bookworm", "6.12": "trixie"}
CACHE = os.environ.get("HUSK_VM_CACHE", "/var/cache/husk-vm")
# depmod and mkfs.ext4 live in sbin, which a non-login environment may leave out.
os.environ["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
# What the initramfs loads to reach the host's file system over virtio-9p and stack the
# overlay root; everything else is loaded on demand from the guest's /lib/modules.
BOOT_MODULES = ["virtio_pci", "9p", "9pnet_virtio", "overlay"]


class VmError(Exception):
    pass


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def apt_options():
    """A private apt configuration with the three releases, so the host's own sources stay as
    they are."""
    base = os.path.join(CACHE, "apt")
    lists = os.path.join(base, "lists")
    os.makedirs(os.path.join(lists, "partial"), exist_ok=True)
    os.makedirs(os.path.join(base, "cache", "archives", "partial"), exist_ok=True)
    sources = os.path.join(base, "sources.list")
    with open(sources, "w") as f:
        for release in SERIES.values():
            f.write(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                f"http://deb.debian.org/debian {release} main\n"
            )
    return [
        "-o", f"Dir::Etc::sourcelist={sources}",
        "-o", "Dir::Etc::sourceparts=-",
        "-o", f"Dir::State::lists={lists}",
        "-o", f"Dir::Cache={os.path.join(base, 'cache')}",
        "-o", "APT::Get::List-Cleanup=0",
        "-o", "APT::Sandbox::User=root",
        "-qq",
    ]


def newest_package(series, opts):
    """The newest generic amd64 kernel image of a series (not cloud, rt or unsigned)."""
    out = subprocess.run(
        ["apt-cache", *opts, "search", "--names-only", f"^linux-image-{re.escape(series)}\\."],
        check=True, capture_output=True, text=True,
    ).stdout
    # 5.10.0-32-amd64, 6.1.0-50-amd64, 6.12.117+deb13-amd64: not -cloud-, -rt- or -unsigned.
    pat = re.compile(rf"^(linux-image-{re.escape(series)}\.[0-9]+(?:-[0-9]+|\+deb[0-9]+)-amd64) ")
    names = [m.group(1) for line in out.splitlines() if (m := pat.match(line))]
    if not names:
        raise VmError(f"no linux-image-{series}.*-amd64 in Debian {SERIES[series]}'s archive")

    def key(name):
        return [int(n) for n in re.findall(r"\d+", name)]

    return max(names, key=key)


def kernel(series):
    """Fetch and unpack the series' kernel once; returns (vmlinuz, modules dir, release)."""
    if series not in SERIES:
        raise VmError(f"unknown kernel series {series}; the matrix has {', '.join(SERIES)}")
    root = os.path.join(CACHE, f"linux-{series}")
    if not os.path.isdir(os.path.join(root, "boot")):
        opts = apt_options()
        print(f"vm: fetching Linux {series} from Debian {SERIES[series]}", file=sys.stderr)
        run(["apt-get", *opts, "update"])
        pkg = newest_package(series, opts)
        work = tempfile.mkdtemp(dir=CACHE)
        try:
            run(["apt-get", *opts, "download", pkg], cwd=work)
            (deb,) = glob.glob(os.path.join(work, "*.deb"))
            unpacked = os.path.join(work, "root")
            run(["dpkg-deb", "-x", deb, unpacked])
            # trixie keeps modules under /usr/lib; depmod -b looks under lib/.
            if not os.path.exists(os.path.join(unpacked, "lib")):
                os.symlink("usr/lib", os.path.join(unpacked, "lib"))
            (vmlinuz,) = glob.glob(os.path.join(unpacked, "boot", "vmlinuz-*"))
            # The package's postinst would write modules.dep: the guest's modprobe needs it.
            run(["depmod", "-b", unpacked, os.path.basename(vmlinuz)[len("vmlinuz-"):]])
            os.rename(unpacked, root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    (vmlinuz,) = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))
    release = os.path.basename(vmlinuz)[len("vmlinuz-"):]
    for lib in ("lib", "usr/lib"):
        mods = os.path.join(root, lib, "modules", release)
        if os.path.isdir(mods):
            return vmlinuz, mods, release
    raise VmError(f"the Linux {series} package has no modules for {release}")


def module_order(mods, wanted):
    """The module files to insmod, dependencies first, from the kernel's modules.dep."""
    deps = {}
    with open(os.path.join(mods, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[path] = rest.split()
    by_name = {}
    for path in deps:
        name = re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", os.path.basename(path)).replace("-", "_")
        by_name[name] = path
    order = []

    def visit(path):
        # modules.dep lists every transitive dependency, the deepest last.
        for d in reversed(deps[path]):
            if d not in order:
                order.append(d)
        if path not in order:
            order.append(path)

    for name in wanted:
        if name in by_name:
            visit(by_name[name])
        # else: built into this kernel.
    return order


def read_module(path):
    if path.endswith(".xz"):
        return subprocess.run(["xz", "-dc", path], check=True, capture_output=True).stdout
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
    if path.endswith(".gz"):
        with gzip.open(path) as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do insmod /modules/$m 2>/dev/null; done
mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /lower || {
  echo "vm: cannot mount the host's root over 9p"; echo o > /proc/sysrq-trigger; }
mount -t tmpfs -o mode=755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || {
  echo "vm: cannot stack the root overlay"; echo o > /proc/sysrq-trigger; }
mkdir -p /newroot/vm-io
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 io /newroot/vm-io
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/sh /vm-io/stage2
"""

# Runs as PID 1 in the guest's real root (the host's dash).
STAGE2 = r"""
mount -t proc proc /proc
mount -t sysfs sysfs /sys
{cgroupfs}
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t mqueue mqueue /dev/mqueue
mkdir -p /lib/modules
ln -sfn {mods} /lib/modules/{release}
echo /sbin/modprobe > /proc/sys/kernel/modprobe
# What systemd's kmod-static-nodes makes: /dev/loop-control and friends, whose first open
# loads their module.
grep -v '^#' /lib/modules/{release}/modules.devname | while read -r _ node dev; do
  t=${dev%${dev#?}}; n=${dev#?}
  mkdir -p "$(dirname /dev/$node)"; [ -e /dev/$node ] || mknod /dev/$node $t ${n%:*} ${n#*:}
done
# udev's modes for what users open: FUSE and TUN/TAP (rootless husk's fuse-overlayfs, pasta).
chmod 0666 /dev/fuse /dev/net/tun 2>/dev/null
# A scratch ext4 disk, as a host's /var/lib and /tmp would be (an overlayfs upper directory
# cannot live on the root overlay, and tmpfs before 6.6 keeps no user.* xattrs).
modprobe virtio_blk
mkdir -p /scratch && mount -t ext4 /dev/vda /scratch || {
  echo "vm: cannot mount the scratch disk"; echo o > /proc/sysrq-trigger; }
mount -t tmpfs -o mode=755 tmpfs /run
# The command's directory (a checkout may live under /tmp) stays the host's.
mkdir -p /run/vm-cwd && mount --bind {cwd} /run/vm-cwd
for d in /tmp /var/tmp /var/lib/husk; do
  mkdir -p $d /scratch$d; chmod 1777 /scratch$d; mount --bind /scratch$d $d
done
mkdir -p {cwd} && mount --bind /run/vm-cwd {cwd}
hostname husk-vm
ip link set lo up 2>/dev/null || busybox ip link set lo up
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
{env}
cd {cwd}
echo "vm: Linux $(uname -r), $(nproc) CPUs, cgroup $(stat -fc %T /sys/fs/cgroup)"
{run}
"""

CGROUP_V2 = "mount -t cgroup2 cgroup2 /sys/fs/cgroup"

# systemd's hybrid layout, as this project's development machines have it: a v1 hierarchy per
# controller, systemd's named one, and an empty cgroup2 at unified. Mounted before systemd
# starts, because systemd as PID 1 follows the layout it finds.
CGROUP_HYBRID = r"""mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
for c in $(awk '!/^#/ && $4 == 1 { print $1 }' /proc/cgroups); do
  mkdir -p /sys/fs/cgroup/$c && mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c
done
mkdir -p /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified"""

# The command under tini as PID 1 (the default).
RUN_TINI = r"""/usr/bin/tini -s -- /bin/sh /vm-io/cmd < /dev/null
echo $? > /vm-io/rc
sync
echo o > /proc/sysrq-trigger
while :; do sleep 1; done 2>/dev/null"""

# The command as a service of systemd booted as PID 1 (the host's systemd, this root's units):
# a target of its own pulls only that service, so none of the host's units start; D-Bus is
# started without its dependencies, for what talks to systemd over the bus.
RUN_SYSTEMD = r"""mkdir -p /run/systemd/system
printf '%s\n' '[Unit]' 'Description=husk VM' 'DefaultDependencies=no' \
  'Wants=husk-vm.service' > /run/systemd/system/husk-vm.target
printf '%s\n' '[Unit]' 'DefaultDependencies=no' '[Service]' 'Type=oneshot' \
  'StandardInput=null' 'StandardOutput=null' 'StandardError=null' \
  'ExecStart=/bin/sh /vm-io/stage3' > /run/systemd/system/husk-vm.service
exec /lib/systemd/systemd --unit=husk-vm.target --log-level=warning --show-status=false"""

STAGE3 = r"""exec > /dev/console 2>&1
systemctl start --job-mode=ignore-requirements dbus.socket dbus.service || echo "vm: D-Bus did not start"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
{env}
cd {cwd}
echo "vm: systemd $(systemctl --version | head -1 | cut -d' ' -f2) is PID 1"
/bin/sh /vm-io/cmd < /dev/null
echo $? > /vm-io/rc
sync
echo o > /proc/sysrq-trigger
"""


def initramfs(series, mods):
    """An initramfs with busybox and the modules to mount the host's root, built once."""
    path = os.path.join(CACHE, f"linux-{series}", "initrd.cpio.gz")
    stamp = f"{INIT}{BOOT_MODULES}"
    try:
        with open(path + ".stamp") as f:
            if os.path.exists(path) and f.read() == stamp:
                return path
    except FileNotFoundError:
        pass
    with tempfile.TemporaryDirectory() as d:
        for sub in ("bin", "proc", "sys", "dev", "modules"):
            os.makedirs(os.path.join(d, sub))
        shutil.copy("/bin/busybox", os.path.join(d, "bin", "busybox"))
        names = []
        for rel in module_order(mods, BOOT_MODULES):
            name = re.sub(r"\.(xz|zst|gz)$", "", os.path.basename(rel))
            with open(os.path.join(d, "modules", name), "wb") as f:
                f.write(read_module(os.path.join(mods, rel)))
            names.append(name)
        with open(os.path.join(d, "modules", "order"), "w") as f:
            f.write("\n".join(names) + "\n")
        init = os.path.join(d, "init")
        with open(init, "w") as f:
            f.write(INIT)
        os.chmod(init, 0o755)
        files = subprocess.run(
            ["find", "."], cwd=d, check=True, capture_output=True
        ).stdout
        cpio = subprocess.run(
            ["cpio", "--quiet", "-o", "-H", "newc"], cwd=d, input=files,
            check=True, capture_output=True,
        ).stdout
    with open(path + ".tmp", "wb") as f:
        f.write(gzip.compress(cpio, 1))
    os.rename(path + ".tmp", path)
    with open(path + ".stamp", "w") as f:
        f.write(stamp)
    return path


def boot(series, command, mem, cpus, timeout, cwd, env, init="tini", cgroup="v2",
         scratch_gib=16):
    vmlinuz, mods, release = kernel(series)
    initrd = initramfs(series, mods)
    # Not under /tmp: where that is a tmpfs, the disk's written blocks would take memory.
    with tempfile.TemporaryDirectory(prefix="run-", dir=CACHE) as io:
        disk = os.path.join(io, "scratch.ext4")
        with open(disk, "wb") as f:
            f.truncate(scratch_gib << 30)
        run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", disk])
        with open(os.path.join(io, "cmd"), "w") as f:
            f.write("exec " + " ".join(shlex.quote(a) for a in command) + "\n")
        exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
        with open(os.path.join(io, "stage2"), "w") as f:
            f.write(
                STAGE2.replace("{run}", RUN_SYSTEMD if init == "systemd" else RUN_TINI)
                .replace("{cgroupfs}", CGROUP_V2 if cgroup == "v2" else CGROUP_HYBRID)
                .replace("{mods}", shlex.quote(mods))
                .replace("{release}", release)
                .replace("{cwd}", shlex.quote(cwd))
                .replace("{env}", exports)
            )
        with open(os.path.join(io, "stage3"), "w") as f:
            f.write(STAGE3.replace("{cwd}", shlex.quote(cwd)).replace("{env}", exports))
        qemu = [
            "qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max",
            "-smp", str(cpus), "-m", str(mem), "-nographic", "-no-reboot", "-nic", "none",
            "-kernel", vmlinuz, "-initrd", initrd,
            # softlockup_panic: a guest kernel that livelocks stops at once, its stack on the
            # console, instead of holding the run until the timeout.
            "-append", "console=ttyS0 quiet panic=-1 softlockup_panic=1 "
            + ("cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 " if cgroup == "v2" else
               "systemd.unified_cgroup_hierarchy=0 ")
            + f"loglevel={os.environ.get('HUSK_VM_LOGLEVEL', '3')}",
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,"
            "readonly=on,multidevs=remap",
            "-virtfs", f"local,path={io},mount_tag=io,security_model=passthrough",
            "-drive", f"file={disk},if=virtio,format=raw,cache=unsafe",
        ]
        started = time.monotonic()
        # Its own session, killed on every way out of here (a timeout, SIGTERM from a
        # cancelled CI job, ^C), so no guest outlives the run.
        proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, start_new_session=True)
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise VmError(f"Linux {series}: no result within {timeout} s")
        finally:
            signal.signal(signal.SIGTERM, previous)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        rc_file = os.path.join(io, "rc")
        if not os.path.exists(rc_file):
            raise VmError(f"Linux {series}: the VM stopped without running the command")
        rc = int(open(rc_file).read().strip() or 125)
        print(f"vm: Linux {series} ({release}) ran it in {time.monotonic() - started:.0f} s, "
              f"exit code {rc}", file=sys.stderr)
        return rc


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kernel", default="6.1", choices=sorted(SERIES))
    p.add_argument("--mem", type=int, default=3072, help="guest memory in MiB")
    p.add_argument("--cpus", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--timeout", type=int, default=1800, help="seconds for boot and command")
    p.add_argument("--cwd", default=os.getcwd())
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the command")
    p.add_argument("--init", default="tini", choices=["tini", "systemd"],
                   help="PID 1 of the guest: tini, or systemd with the command as its service")
    p.add_argument("--cgroup", default="v2", choices=["v2", "v1"],
                   help="v2 (pure), or v1: systemd's hybrid layout")
    p.add_argument("--fetch-only", action="store_true")
    p.add_argument("command", nargs="*")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("vm: needs root (9p passthrough of /, the kernel cache)", file=sys.stderr)
        return 125
    os.makedirs(CACHE, exist_ok=True)
    try:
        if a.fetch_only:
            print(kernel(a.kernel)[2])
            return 0
        if not a.command:
            p.error("no command")
        env = dict(e.split("=", 1) for e in a.env)
        return boot(a.kernel, a.command, a.mem, a.cpus, a.timeout, a.cwd, env, a.init, a.cgroup)
    except (VmError, subprocess.CalledProcessError, OSError) as e:
        print(f"vm: {e}", file=sys.stderr)
        return 125


if __name__ == "__main__":
    sys.exit(main())
