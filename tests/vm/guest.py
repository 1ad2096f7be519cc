#!/usr/bin/env python3
"""Runs inside the VM (tests/vm/matrix.py starts it): each test executable of the plan in its
package's directory, one after another, then the totals as `guest: N passed, N failed`."""

import json
import os
import re
import subprocess
import sys


def main():
    plan = json.loads(sys.argv[1])
    passed = failed = skips = 0
    for suite in plan:
        # --nocapture: what a test says it skipped, and why, shows in the log.
        args = [suite["exe"], "--test-threads=2", "--nocapture"]
        if suite["filters"]:
            args += suite["filters"]
        for name in suite.get("skip", []):
            args += ["--skip", name]
        print(f"guest: {suite['name']}", flush=True)
        proc = subprocess.Popen(args, cwd=suite["cwd"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        counted = False
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            skips += line.startswith("SKIP")
            m = re.match(r"^test result: \w+\. (\d+) passed; (\d+) failed", line)
            if m:
                passed += int(m.group(1))
                failed += int(m.group(2))
                counted = True
        if proc.wait() != 0 and not counted:
            # It died before its summary (a crash, a signal): count it as one failure.
            print(f"guest: {suite['name']} exited with {proc.returncode} before its summary")
            failed += 1
    print(f"guest: {skips} SKIP lines above (a test, or a part of one, this kernel could not run)")
    print(f"guest: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
