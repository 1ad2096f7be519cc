#!/usr/bin/env python3
"""The kernel matrix: husk's kernel-facing tests inside a VM per Debian kernel (pure cgroup v2).

    tests/vm/matrix.py [--kernels 5.10,6.1,6.12] [--only SUITE[,SUITE]]

Builds the test executables here (`cargo test --no-run`), boots each kernel with tests/vm/vm.py
and runs the suites below in it, then prints one `KERNEL: N passed, N failed` line per kernel
and exits non-zero if any test failed or any VM did not finish. SYSTEMD_SUITES run in a second
boot of each kernel with systemd as PID 1, and once more on the oldest kernel with systemd's
hybrid cgroup v1 layout. The same executables run on
this host's own kernel (hybrid cgroup v1) in the ordinary `cargo test`.
"""

import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))

# Test executable (cargo's target name) -> the tests to run in the VM (None: all of them).
# What touches the kernel: namespaces, mounts and rootfs, cgroups, seccomp, the snapshotters,
# and the engine's run/exec/stop/stats/OOM paths. Parsers and pure logic stay on the host.
SUITES = {
    "cgroups": None,
    "lifecycle": None,
    "isolation": None,
    "seccomp": None,
    "erofs": None,
    "unpack": None,
    "images": None,
    # The engine's own kernel-facing paths: OOM, the freezer, limits changed while running, a
    # pty, --timeout's pidfd, a killed monitor's reaping. Its run/exec/stop/records/volumes
    # paths go through the runtime the other suites test on every kernel; they, and its
    # command-line shapes, run on the host only.
    "engine": ["an_oom_kill_is_reported", "pause_freezes_and_unpause", "update_changes_the_limits",
               "a_tty_through_a_pty", "a_timeout_kills_the_container", "a_killed_monitor_or_husk"],
    # The CI sandbox's kernel-facing parts: cgroup figures (v2 before and after memory.peak),
    # pidfds and cgroup kills, idmapped mounts (5.12+).
    "sandbox": ["the_report_measures_known_work", "keep_id_gives_the_workspace_to_the_caller",
                "die_with_parent_takes_the_container_with_a_killed_husk"],
    "library": None,
    # Rootless: limits in a cgroup v2 subtree delegated to the user (none on this host's v1),
    # the layers stacked in the user namespace (fuse-overlayfs before Linux 5.11), and a
    # container's own user namespace (fuse-overlayfs shifting the layers' owners).
    "rootless": ["limits_work_in_a_delegated_cgroup_v2_subtree",
                 "layers_stack_in_the_user_namespace_on_every_kernel",
                 "a_rootless_container_gets_a_user_namespace_of_its_own"],
    # --uidmap: overlayfs over idmapped layers from 5.19; 5.10 says so in one line.
    "userns": None,
    "parity": None,
    "run": None,
    "security": None,
    "leaks": None,
    # What overlayfs leaves in a container's upper directory (whiteouts, opaque directories)
    # becoming layers, on the kernels at the edges.
    "build": ["commit_makes_an_image", "build_stores_its_layers_as_unpacked_directories"],
}

# Tests that run on the host only, never in a guest: what they test is not the kernel's (the
# store's and the registry's logic: tags, credentials, platforms, podman's archives, which
# take a minute under TCG). The layer mounts run in every guest.
HOST_ONLY = {
    "images": ["save_and_load_round_trip_through_both_formats_and_podman",
               "login_then_pull_from_a_registry_that_wants_credentials",
               "two_pulls_of_one_image_at_once_both_succeed_with_one_download",
               "rmi_refuses_an_image_a_container_uses_and_an_id_of_several_names",
               "tag_rmi_mount_and_prune", "an_image_per_platform_under_one_name"],
    # iproute2's `ip netns exec` and its fresh sysfs behave alike on every kernel.
    "run": ["a_start_under_ip_netns_exec_says_why_it_finds_no_cgroups"],
}

# Not in CI's boots: tests/network.rs (bridges, NAT, published ports through the CNI plugins).
# It passes on Linux 5.10 in a boot of its own (`--only network --kernels 5.10`: 4 of 4, and
# it found portmap's chain race), but in CI's full boot the guest stalled in a later suite
# after it, twice (no output for 900 s; the kernel's asynchronous network-namespace cleanup
# under TCG is the likely cause), and a stall costs a second 15-minute boot.
OPTIONAL_SUITES = {
    "network": ["the_default_bridge", "outbound_nat", "user_networks", "concurrent_starts"],
}

# What of the tini boot runs on the first (oldest) kernel only (None: the whole suite; a
# list: those tests).
FIRST_KERNEL_ONLY = {
    # The escapes it tries (fds, /proc/self/exe, symlinked volume targets, a hostile layer)
    # meet the same kernel interfaces on every version since 5.10.
    "security": None,
    # The engine as a library: the same runtime paths as the engine suite's.
    "library": None,
}

# Suites the kernels between the oldest and the newest skip. Each version husk falls back at
# (5.12 idmapped mounts and mount_setattr, 5.14 cgroup.kill, 5.19 memory.peak, 6.3 tmpfs
# idmaps, 6.8 overlayfs's lowerdir+) has its two sides on the edges: 6.1 takes the same side
# as 6.12 of the first three and as 5.10 of the last two. The runtime's suites still run on
# the middle ones. Keeps CI under 30 minutes on 2 cores.
EDGE_KERNELS_ONLY = {"images", "engine", "security", "library", "sandbox", "build"}

# Suites that need systemd as PID 1 (the systemd cgroup driver): a second boot of each kernel
# with systemd as the guest's init. containerd's CRI with SystemdCgroup runs in the oldest
# kernel's (its side of the protocol does not change with the kernel; its tini-booted suite,
# on cgroupfs, runs on the host); husk's own systemd driver on every kernel, and once more on
# systemd's hybrid v1 layout.
SYSTEMD_SUITES = {
    "systemd": None,
    "containerd": ["cri_with_systemd_cgroup"],
}
SYSTEMD_HYBRID_SUITES = {"systemd": None}


def executables(only, wanted):
    out = subprocess.run(
        ["cargo", "test", "--workspace", "--no-run", "--message-format=json"],
        cwd=TOP, check=True, capture_output=True, text=True,
    ).stdout
    found = []
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        target = msg["target"]
        if "test" not in target["kind"] or target["name"] not in wanted:
            continue
        if only and target["name"] not in only:
            continue
        cwd = os.path.dirname(msg["manifest_path"])
        found.append({"name": target["name"], "exe": msg["executable"], "cwd": cwd,
                      "filters": wanted[target["name"]]})
    return found


def boot_and_test(kernel, plan, timeout, init, cgroup, out):
    """((passed, failed) of the guest's run, or None if the VM stopped before its summary;
    whether the guest kernel oopsed).
    The guest's lines go to `out` as they come."""
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "vm.py"), "--kernel", kernel, "--init", init,
         "--cgroup", cgroup,
         "--timeout", str(timeout), "--cwd", TOP, "--",
         "/usr/bin/python3", os.path.join(HERE, "guest.py"), plan],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
    )
    result = None
    oops = False
    for line in proc.stdout:
        out(line)
        m = re.match(r"^guest: (\d+) passed, (\d+) failed", line)
        if m:
            result = (int(m.group(1)), int(m.group(2)))
        oops = oops or "Oops:" in line or "Kernel panic" in line
    proc.wait()
    return result, oops


def plan_for(suites, position, first_only):
    """The suites as the kernel at `position` (first, middle, last) runs them."""
    kept = []
    for s in suites:
        name = s["name"]
        skip = list(HOST_ONLY.get(name, []))
        if position != "first" and name in first_only:
            if first_only[name] is None:
                continue
            skip += first_only[name]
        if position == "middle" and name in EDGE_KERNELS_ONLY:
            continue
        kept.append(dict(s, skip=skip) if skip else s)
    return kept


def run_boot(boot, timeout, out):
    k, init, cgroup, suites = boot
    layout = "pure cgroup v2" if cgroup == "v2" else "hybrid cgroup v1"
    out(f"=== Linux {k}, {layout}, {init} as PID 1 ===\n")
    plan = json.dumps(suites)
    # A VM that stops before the tests' summary (a guest kernel panic or lockup under QEMU's
    # emulation, a timeout) is booted once more; test failures are not retried. A guest
    # kernel's oops gets two more boots: under multi-threaded TCG the kernel's live code
    # patching (int3 breakpoints, text_poke) now and then oopses before any test ran (seen
    # twice in a row on 6.12 at 1.3 s and 20 s into a boot), which says nothing of husk.
    attempts = 2
    attempt = 0
    while True:
        attempt += 1
        result, oops = boot_and_test(k, plan, timeout, init, cgroup, out)
        if oops:
            attempts = 3
        if result is not None or attempt >= attempts:
            break
        why = "its kernel oopsed" if oops else "it stopped before its tests' summary"
        out(f"matrix: Linux {k}: {why}; booting it once more\n")
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kernels", default="5.10,6.1,6.12")
    p.add_argument("--only", default="", help="comma-separated suite names")
    p.add_argument("--timeout", type=int, default=900, help="seconds per boot (the longest takes ~450)")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("SKIP the kernel matrix: it needs root (the guests see / over 9p passthrough)")
        return 0
    only = {s for s in a.only.split(",") if s}
    kernels = a.kernels.split(",")
    # (init, cgroup layout, suites, kernels, first-kernel-only): the systemd cgroup driver
    # also on systemd's hybrid v1 layout, once, on the oldest kernel that has v1's memory
    # controller (hybrid hosts run older kernels; Debian's 6.12 is built without
    # CONFIG_MEMCG_V1).
    with_memcg_v1 = [k for k in kernels if tuple(int(n) for n in k.split(".")) < (6, 11)]
    # An optional suite runs only when --only names it.
    tini_suites = dict(SUITES, **{k: v for k, v in OPTIONAL_SUITES.items() if k in only})
    kinds = [("tini", "v2", tini_suites, kernels, FIRST_KERNEL_ONLY),
             ("systemd", "v2", SYSTEMD_SUITES, kernels, {"containerd": None}),
             ("systemd", "v1", SYSTEMD_HYBRID_SUITES, with_memcg_v1[:1], {})]
    boots = []
    for init, cgroup, wanted, on, first_only in kinds:
        suites = executables(only, wanted)
        for k in kernels:
            if k not in on:
                continue
            position = ("first" if k == kernels[0] else
                        "last" if k == kernels[-1] else "middle")
            mine = plan_for(suites, position, first_only)
            if mine:
                boots.append((k, init, cgroup, mine))
    if not boots:
        print("matrix: no test executables found", file=sys.stderr)
        return 1
    # Each kernel's boots together, oldest kernel first.
    boots.sort(key=lambda b: kernels.index(b[0]))

    def live(line):
        sys.stdout.write(line)
        sys.stdout.flush()
    # One guest at a time: two side by side each take twice as long on this 2-core host (TCG
    # keeps both cores busy), and one ran past its 900 s when tried.
    results = [(b, run_boot(b, a.timeout, live)) for b in boots]
    totals = {k: (0, 0) for k in kernels}
    failed_vm = []
    for (k, init, cgroup, _), result in results:
        if result is None:
            failed_vm.append(f"{k} ({init}, {cgroup})")
            result = (0, 0)
        totals[k] = (totals[k][0] + result[0], totals[k][1] + result[1])
    print()
    for k, (passed, failed) in totals.items():
        print(f"linux-{k}: {passed} passed, {failed} failed")
    for k in failed_vm:
        print(f"matrix: Linux {k} did not finish its tests")
    bad = failed_vm or any(f for _, f in totals.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
