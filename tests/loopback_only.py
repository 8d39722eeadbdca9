#!/usr/bin/env python3
"""Runs a command in a network namespace of its own whose only interface is loopback:

    python tests/loopback_only.py python -m pytest -q tests

Why: the Ray tests start a real local cluster, and Ray (2.60) listens on all interfaces of the node
whatever address it is given (DESIGN decision 28). Inside a fresh namespace "all interfaces" is `lo`,
so nothing the tests start can be reached from outside the machine, and any test that tried to
reach the network would fail here instead of depending on it. .ci/run runs the test suite this way.

How: `unshare --user --map-root-user --net` (an unprivileged user namespace; no root needed), then
`lo` is brought up with one ioctl (no iproute2 needed) and the command is exec'd with
FASTRADIO_TESTS_LOOPBACK_ONLY=1, which tests/test_ray.py uses to assert the isolation. Where user
namespaces are not allowed (some container runtimes), the command runs as it is, with a warning, and
that assertion skips.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys

ENV = "FASTRADIO_TESTS_LOOPBACK_ONLY"
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def interfaces() -> list[str]:
    """The network interfaces of this process's namespace (/proc/self/net/dev is per namespace;
    /sys/class/net is not, without a new mount namespace)."""
    with open("/proc/self/net/dev") as f:
        return [line.split(":", 1)[0].strip() for line in f.readlines()[2:] if ":" in line]


def bring_up_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if os.environ.get(ENV) == "inside":
        # second stage, inside the new namespace
        if interfaces() != ["lo"]:
            print(f"loopback_only: expected only 'lo' in the new namespace, found {interfaces()}", file=sys.stderr)
            return 2
        bring_up_loopback()
        os.environ[ENV] = "1"
        os.execvp(argv[0], argv)
    unshare = shutil.which("unshare")
    probe = [unshare, "--user", "--map-root-user", "--net", "true"] if unshare else None
    if probe is None or subprocess.run(probe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        print("loopback_only: WARNING: cannot create a user + network namespace here (no `unshare`, or user "
              "namespaces are not allowed); running the command without network isolation", file=sys.stderr)
        os.environ.pop(ENV, None)
        os.execvp(argv[0], argv)
    os.environ[ENV] = "inside"
    os.execv(unshare, [unshare, "--user", "--map-root-user", "--net", sys.executable, os.path.abspath(__file__), *argv])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
