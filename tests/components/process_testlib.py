"""Finding a process's children and waiting on them, for the tests that kill a runner or a job
and check what it leaves behind (test_lifeline.py, test_beam_worker.py)."""

import os
import time


def children_of(pid: int, command_part: bytes | None = None) -> list[int]:
    """The processes whose parent is `pid` (read from /proc), those with `command_part` as one
    argument of their command line when it is given."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            if parent != pid:
                continue
            if command_part is not None:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if command_part not in f.read().split(b"\0"):
                        continue
        except (OSError, ValueError, IndexError):
            continue
        found.append(int(name))
    return found


def wait_until(condition, seconds: float) -> bool:
    """Whether `condition()` became true within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False
