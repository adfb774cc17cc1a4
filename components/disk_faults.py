"""A step's write that fails for want of space or of write access ends the step with one line
that names the path and the reason, and leaves nothing half-written among its outputs.

A volume that fills up (ENOSPC, or EDQUOT over a quota) or cannot be written (EROFS for a
read-only mount, EACCES or EPERM for a folder the step's user may not write) reaches a step
through whichever library was writing, each in its own way:

- an `OSError` with that errno, with the path (`open`, `os.makedirs`) or without it (a
  `write` or `close` on an open file);
- Apache Beam's `RuntimeError` around it, whose message names the stage ("OSError: [Errno 28]
  No space left on device [while running 'WriteSplits/Write[train]/...']"), or only that
  text when a remote worker raised it;
- `shutil.Error` from `copytree`: the (source, destination, reason) of each file it failed on;
- TensorFlow's `ResourceExhaustedError` and friends: "<path>; No space left on device";
- h5py's `OSError` with HDF5's text: "file write failed: ..., filename = '<path>', ...,
  errno = 28, ...".

`find` recognises each (walking `__cause__` and `__context__`) and says which errno and which
path. `reported(step, outputs, ...)` wraps a step's work: on such a fault it removes what the
step had written so far (its `clear` callable), logs the traceback at DEBUG, and ends the step
with `SystemExit("<step>: error: <reason> while writing <path>: <what to do>; nothing of this
step was published")`, as the steps end on unusable input. EACCES and EPERM count only for a
path inside the step's `outputs`: reading an input the step may not read is no disk fault.

HDF5 cannot close a file whose write failed: h5py reports each object of it that it fails to
free ("Exception ignored in ... __dealloc__", sent to the DEBUG log instead while the step
runs), and the interpreter crashes as it exits (h5py#914). So when HDF5's write failed and
h5py still holds a file open, the step prints its line and ends at once with status 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence

logger = logging.getLogger(__name__)

# errno -> (what happened, what to do about it).
_FREE = "free space on that volume and retry the run"
_GRANT = "give the step's user write access there and retry the run"
FAULTS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on device", _FREE),
    errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota there and retry the run"),
    errno.EROFS: ("read-only file system", "mount that volume read-write and retry the run"),
    errno.EACCES: ("permission denied", _GRANT),
    errno.EPERM: ("operation not permitted", _GRANT),
}
# Faults whose path may as well be an input the step reads.
_ALSO_READS = (errno.EACCES, errno.EPERM)

_ERRNO = re.compile(r"\[Errno (\d+)\]|\berrno = (\d+)")
# Each platform text (strerror) of the faults, as TensorFlow and HDF5 quote it.
_STRERROR = {os.strerror(code).lower(): code for code in FAULTS}
_HDF5_PATH = re.compile(r"filename = '([^']+)'")
_PYTHON_PATH = re.compile(r"\[Errno \d+\] [^:\n]+: '([^']+)'")
_TF_PATH = re.compile(
    r"(\S+); (?:" + "|".join(re.escape(os.strerror(c)) for c in FAULTS) + ")", re.IGNORECASE
)
_BEAM_STAGE = re.compile(r"while running '([^']+)'")


@dataclasses.dataclass(frozen=True)
class DiskFault:
    """A write that failed: the errno (one of FAULTS), the path when known, and the Beam stage
    that was running when it says so."""

    errno: int
    path: str | None = None
    stage: str | None = None

    @property
    def reason(self) -> str:
        return FAULTS[self.errno][0]

    def line(self, step: str, path: str, left: Sequence[str] = ()) -> str:
        """The step's one error line; `left`: partial outputs that could not be removed."""
        what, advice = FAULTS[self.errno]
        if left:
            more = f" and {len(left) - 1} more" if len(left) > 1 else ""
            outcome = f"could not remove {left[0]}{more} either, which a retry replaces"
        else:
            outcome = "nothing of this step was published"
        return f"{step}: error: {what} while writing {path}: {advice}; {outcome}"


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _from_text(text: str) -> tuple[int | None, str | None]:
    """(errno, path) read from an error's text; None for what it does not say."""
    code = None
    for match in _ERRNO.finditer(text):
        number = int(match.group(1) or match.group(2))
        if number in FAULTS:
            code = number
            break
    lowered = text.lower()
    if code is None:
        code = next((c for s, c in _STRERROR.items() if s in lowered), None)
    path = None
    for pattern in (_HDF5_PATH, _PYTHON_PATH, _TF_PATH):
        found = pattern.search(text)
        if found:
            path = found.group(1)
            break
    return code, path


def _candidates(err: BaseException) -> Iterator[tuple[int | None, str | None]]:
    """(errno, path) of one exception of the chain."""
    if isinstance(err, shutil.Error) and err.args and isinstance(err.args[0], list):
        for entry in err.args[0]:  # copytree: (source, destination, str(reason)) per file
            if isinstance(entry, tuple) and len(entry) == 3:
                code, _ = _from_text(str(entry[2]))
                yield code, str(entry[1])
        return
    code, path = _from_text(str(err))
    if isinstance(err, OSError) and err.errno in FAULTS:
        code = err.errno
        # Of two paths (a rename, a copy) the second is the one written.
        named = err.filename2 if err.filename2 is not None else err.filename
        if isinstance(named, str | bytes | os.PathLike):
            path = os.fsdecode(named)
    yield code, path


def _inside(path: str, roots: Sequence[str]) -> bool:
    path = os.path.abspath(path)
    for root in roots:
        root = os.path.abspath(root)
        if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False


def find(
    err: BaseException,
    outputs: Sequence[str] | None = None,
    stages: Mapping[str, str] | None = None,
) -> DiskFault | None:
    """The disk fault behind `err` (a volume full or not writable), or None.

    `outputs`: the folders and files the step writes; EACCES and EPERM count only for a path
    inside one of them (None: anywhere). The path is the first one the chain names, the
    innermost error's first; else the one `stages` (Beam transform label -> the path it
    writes) gives the Beam stage named in the chain's messages."""
    chain = list(_chain(err))
    stage = next(
        (m.group(1) for e in chain for m in [_BEAM_STAGE.search(str(e))] if m is not None), None
    )
    code, path = None, None
    for exception in reversed(chain):  # the innermost first: it knows the most
        for found_code, found_path in _candidates(exception):
            if found_code is None:
                continue
            if code is None:
                code = found_code
            if path is None and found_code == code and found_path:
                path = found_path
    if code is None:
        return None
    path = path or _stage_path(stage, stages or {})
    if code in _ALSO_READS and outputs is not None and not (path and _inside(path, outputs)):
        return None
    return DiskFault(code, path, stage)


def _stage_path(stage: str | None, stages: Mapping[str, str]) -> str | None:
    """The path written by the Beam transform that `stage` (a full label) is part of."""
    if stage is None:
        return None
    matches = [k for k in stages if stage == k or stage.startswith(k + "/")]
    return stages[max(matches, key=len)] if matches else None


def remove(paths: Sequence[str]) -> list[str]:
    """Remove each file or folder of `paths` that exists; returns those that could not be."""
    left = []
    for path in paths:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
        except OSError:
            left.append(path)
    return left


@contextlib.contextmanager
def writing(path: str) -> Iterator[None]:
    """Name `path` on an OSError that the block raises without a path (a `write` or `close` on
    an open file says which device failed, not which file)."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            err.filename = path
        raise


def _hdf5_failed(err: BaseException) -> bool:
    """Whether HDF5 reported the failed write (its text names the file)."""
    return any(_HDF5_PATH.search(str(e)) for e in _chain(err))


def _hdf5_file_open() -> bool:
    h5py = sys.modules.get("h5py")
    return h5py is not None and bool(h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE))


def _exit_now(line: str) -> None:
    """End the process with `line` and status 1, as SystemExit would, without unwinding."""
    logging.shutdown()
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)
    os._exit(1)


@contextlib.contextmanager
def reported(
    step: str,
    outputs: Sequence[str],
    clear: Callable[[], Sequence[str]] | None = None,
    stages: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """Run a step's work; a disk fault in it (see `find`) ends the step with one line.

    Args:
        step: the step's name, the line's first word.
        outputs: what the step writes, its main output first (named when the fault names no
            path).
        clear: removes what the step wrote so far; returns what it could not remove.
        stages: Beam transform label -> the path it writes, to name the path of a fault that
            a Beam stage reports without one.
    """
    # h5py's objects of a file HDF5 failed to write fail to close as they are freed, and
    # Cython prints each error (through sys.excepthook, then sys.unraisablehook).
    hooks = sys.excepthook, sys.unraisablehook

    def excepthook(kind, value, traceback) -> None:
        if find(value) is not None:
            logger.debug("%s", value, exc_info=(kind, value, traceback))
        else:
            hooks[0](kind, value, traceback)

    def unraisablehook(report) -> None:
        if report.exc_value is not None and find(report.exc_value) is not None:
            logger.debug("%s: %s", report.err_msg or "ignored", report.exc_value)
        else:
            hooks[1](report)

    sys.excepthook, sys.unraisablehook = excepthook, unraisablehook
    try:
        yield
    except Exception as err:
        fault = find(err, outputs, stages)
        if fault is None:
            raise
        path = fault.path or outputs[0]
        left = list(clear()) if clear is not None else []
        line = fault.line(step, path, left)
        logger.debug("%s", line, exc_info=err)
        if _hdf5_failed(err) and _hdf5_file_open():
            # A file HDF5 failed to write cannot be closed; the interpreter would crash on it
            # as it exits (h5py#914). End here.
            _exit_now(line)
        raise SystemExit(line) from None
    finally:
        sys.excepthook, sys.unraisablehook = hooks
