"""A small tmpfs for one test: a volume that fills up, goes read-only and comes back.

`mounted(path, size, request)` mounts it (as root: `mount -t tmpfs`). Where mounting is not
allowed, the test runs again in a child pytest inside a user and mount namespace
(`unshare -rm`, in which the test is root of its own mounts) and this one reports that run:
skipped with "passed in a user namespace" or failed with its output. Where neither is allowed,
the test is skipped with the reason. The volume is unmounted when the test ends, whatever
happens.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Set in the child pytest that runs a test inside a user namespace.
IN_NAMESPACE_ENV = "MLPR_TEST_IN_USER_NAMESPACE"
FILLER = ".filler"


def fill(path: str | os.PathLike) -> int:
    """Fill the volume at `path` up with a file of zeros until no byte more fits; returns the
    bytes written. Any later write of a new block there fails with ENOSPC."""
    written = 0
    block = b"\0" * (1 << 16)
    with open(os.path.join(path, FILLER), "ab", buffering=0) as fh:
        for size in (1 << 16, 1 << 12, 1):  # whole blocks, then the last bytes
            try:
                while True:
                    written += fh.write(block[:size])
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
    return written


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise PermissionError(done.stderr.strip() or f"mount {' '.join(args)} failed")


class Volume:
    """A tmpfs mounted at `path`."""

    def __init__(self, path: Path):
        self.path = path

    def fill(self) -> int:
        return fill(self.path)

    def free(self) -> None:
        """Remove what `fill` wrote."""
        os.remove(self.path / FILLER)

    def resize(self, size: str) -> None:
        _mount("-o", f"remount,size={size}", str(self.path))

    def read_only(self) -> None:
        _mount("-o", "remount,ro", str(self.path))

    def read_write(self) -> None:
        _mount("-o", "remount,rw", str(self.path))


def _in_user_namespace(request: pytest.FixtureRequest, refused: str) -> None:
    """Run the requesting test in a child pytest inside `unshare -rm`; skip or fail this one
    with its outcome (never returns)."""
    if os.environ.get(IN_NAMESPACE_ENV):
        pytest.skip(f"cannot mount a tmpfs, not even in a user namespace: {refused}")
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare, "-rm", "true"], capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip(
            f"mounting a tmpfs needs root ({refused}) or a user namespace (unshare -rm), "
            "and neither is allowed here"
        )
    child = subprocess.run(
        [unshare, "-rm", sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider"]
        + ["-q", request.node.nodeid],
        cwd=request.config.rootpath,
        env={**os.environ, IN_NAMESPACE_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if child.returncode != 0:
        pytest.fail(
            f"in a user namespace (unshare -rm):\n{child.stdout[-6000:]}{child.stderr[-2000:]}"
        )
    pytest.skip("passed in a user namespace (unshare -rm), where it could mount its tmpfs")


@contextlib.contextmanager
def mounted(path: Path, size: str, request: pytest.FixtureRequest) -> Iterator[Volume]:
    """A tmpfs of `size` (mount's units: 256k, 4m) at `path` for the block."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    except PermissionError as err:
        _in_user_namespace(request, str(err))
    try:
        yield Volume(path)
    finally:
        gc.collect()
        done = subprocess.run(["umount", str(path)], capture_output=True, text=True)
        if done.returncode != 0:  # detach it all the same, and say what held it
            subprocess.run(["umount", "--lazy", str(path)], check=True)
            held = _open_files(path)
            raise AssertionError(f"{done.stderr.strip()}; files this process holds open: {held}")


def _open_files(path: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(path)):
                found.append(target)
    return found


def files(root: str | os.PathLike) -> list[str]:
    """Every file under `root` (not folders), relative, sorted."""
    found = []
    for folder, _, names in os.walk(root):
        found += [os.path.relpath(os.path.join(folder, n), root) for n in names]
    return sorted(found)
