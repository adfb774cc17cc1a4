"""The local server's view of the model repository, with TF Serving's version policy.

`<model_base>/<model_name>/<version>/` as TF Serving reads it (serving/repository.py):
each numeric directory is a version; anything else is ignored. As TF Serving's model server
does (its `ServableVersionPolicy` and `AvailabilityPreservingPolicy`, and the retry options
`max_num_load_retries` and `load_retry_interval_micros` of its ServerCore):

- the policy names the versions to serve: the newest N (`latest:N`, `latest` = 1) or every
  version on disk (`all`);
- a version the policy wants is loaded (and its warmup requests replayed) before a version
  it no longer wants is unloaded, so that something is always served: when the newest
  directory disappears, the next one loads and takes over, and the old one serves until then;
- a failed load is retried, `max_load_retries` times at `retry_interval_s`, the version
  LOADING meanwhile; after the last attempt it ends in END with the load error and that
  error's own status code (GetModelStatus), as TF Serving's LoaderHarness reports it;
- a version that is still LOADING when the policy no longer wants it (a newer version
  came, or its directory went) has its retries cancelled and ends in END, with its last
  load error if it had one (TF Serving's CancelLoadServableRetry); a version that ended and
  is wanted again (back on disk, or the newest again) starts afresh;
- error texts name versions by `<model_name>/<version>`, never by the server's own path;
- requests hold the version they started with: a swap fails none of them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops of the serving graph)
from tensorflow.core.protobuf import error_codes_pb2, saved_model_pb2

from serving.repository import SAVED_MODEL_PB, numeric_versions
from serving.request_checks import RequestError, bounded
from serving.warmup import read_warmup_requests

log = logging.getLogger(__name__)

# TF Serving's defaults (model_servers/server.cc: --max_num_load_retries=5,
# --load_retry_interval_micros=60s; model_servers/server.h: file_system_poll_wait_seconds = 1).
MAX_LOAD_RETRIES = 5
RETRY_INTERVAL_S = 60.0
POLL_SECONDS = 1.0
LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"


@dataclasses.dataclass(frozen=True)
class ServedVersion:
    """One loaded version: its signature functions and their SignatureDefs."""

    version: int
    path: Path
    loaded: object  # what tf.saved_model.load returns; kept alive for its functions
    signatures: dict
    signature_defs: dict  # name -> tensorflow.SignatureDef

    def input_specs(self, signature: str) -> dict[str, tf.TensorSpec]:
        return dict(self.signatures[signature].structured_input_signature[1])


@dataclasses.dataclass
class VersionStatus:
    """What GetModelStatus reports of one version: LOADING (also between load retries),
    AVAILABLE, or END (unloaded, failed for good, or given up when no longer wanted);
    `error` is the last load error and `error_code` its status code (error_codes_pb2);
    `retired`: ended and no longer wanted, so wanting it again starts afresh."""

    version: int
    state: str = LOADING
    error: str = ""
    error_code: int = error_codes_pb2.OK
    attempts: int = 0
    retry_at: float = 0.0
    retired: bool = False


def load_error_code(err: BaseException) -> int:
    """The status code of a failed load, as TensorFlow's loader would report it: an OpError's
    own code, NOT_FOUND for a missing file, a refused warmup request's code, else UNKNOWN."""
    if isinstance(err, tf.errors.OpError):
        return err.error_code
    if isinstance(err, RequestError):  # gRPC numbers its codes as error_codes_pb2 does
        return err.code.value[0]
    if isinstance(err, FileNotFoundError):
        return error_codes_pb2.NOT_FOUND
    return error_codes_pb2.UNKNOWN


def load_version(version: int, path: Path) -> ServedVersion:
    if not (path / SAVED_MODEL_PB).is_file():
        raise FileNotFoundError(f"no {SAVED_MODEL_PB} in {path}")
    loaded = tf.saved_model.load(str(path))
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / SAVED_MODEL_PB).read_bytes())
    defs = dict(proto.meta_graphs[0].signature_def)
    defs.pop("__saved_model_init_op", None)
    return ServedVersion(version, path, loaded, dict(loaded.signatures), defs)


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which versions on disk to serve: the newest `latest` of them, or all (latest=None)."""

    latest: int | None = 1

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """`all`, `latest` or `latest:N` (N >= 1), as a command-line option spells it."""
        name, _, count = text.strip().partition(":")
        if name == "all" and not count:
            return cls(latest=None)
        if name == "latest" and (not count or (count.isdigit() and int(count) >= 1)):
            return cls(latest=int(count or 1))
        raise ValueError(
            f"version policy must be 'all', 'latest' or 'latest:N' (N >= 1), got {text!r}"
        )

    def wanted(self, versions: list[int]) -> set[int]:
        ordered = sorted(versions)
        return set(ordered if self.latest is None else ordered[-self.latest :])

    def __str__(self) -> str:
        return "all" if self.latest is None else f"latest:{self.latest}"


LATEST = VersionPolicy()  # TF Serving's default: the newest version only


class VersionManager:
    """Serves the versions of `model_name` under `model_base` that `policy` names.

    `poll()` reconciles the loaded versions with the directories on disk (see the module
    doc); `start()` polls in a thread. Reads (`current`, `get`, `statuses`) take no lock:
    the loaded map is replaced, never changed in place.

    Args:
        warmup: called with each newly loaded version and its warmup requests; an exception
            fails the load.
        on_switch: called with the new newest version whenever it changes (None: no
            version is available any more).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        model_base: str,
        model_name: str,
        policy: VersionPolicy = LATEST,
        max_load_retries: int = MAX_LOAD_RETRIES,
        retry_interval_s: float = RETRY_INTERVAL_S,
        warmup=None,
        on_switch=None,
        clock=time.monotonic,
    ):
        if max_load_retries < 0 or retry_interval_s < 0:
            raise ValueError(
                f"max_load_retries and retry_interval_s must be >= 0, got {max_load_retries} "
                f"and {retry_interval_s}"
            )
        self.model_root = Path(model_base) / model_name
        self.model_name = model_name
        self.policy = policy
        self.max_load_retries = max_load_retries
        self.retry_interval_s = retry_interval_s
        self._warmup = warmup
        self._on_switch = on_switch
        self._clock = clock
        self._loaded: dict[int, ServedVersion] = {}
        self._status: dict[int, VersionStatus] = {}
        self._lock = threading.Lock()  # one reconciliation at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> ServedVersion | None:
        """The newest loaded version (what a request without a version gets)."""
        loaded = self._loaded
        return loaded[max(loaded)] if loaded else None

    def get(self, version: int) -> ServedVersion | None:
        return self._loaded.get(version)

    def statuses(self) -> list[VersionStatus]:
        return [dataclasses.replace(s) for _, s in sorted(self._status.items())]

    def poll(self) -> ServedVersion | None:
        """Load what the policy wants and is not loaded (newest first, failed loads when
        their retry is due), then unload what it no longer wants once something it wants
        is available. Returns the newest loaded version."""
        with self._lock:
            before = self.current
            on_disk = dict(numeric_versions(self.model_root))
            wanted = self.policy.wanted(list(on_disk))
            for version in sorted(wanted, reverse=True):
                if version not in self._loaded:
                    self._try_load(version, on_disk[version])
            if not wanted or any(v in self._loaded for v in wanted):
                for version in sorted(set(self._loaded) - wanted):
                    self._loaded = {v: s for v, s in self._loaded.items() if v != version}
                    self._status[version] = VersionStatus(version, END)
                    log.info("unloaded version %d of %r", version, self.model_name)
            for version, status in self._status.items():
                if version in wanted or version in self._loaded:
                    continue
                if status.state == LOADING:  # waiting for a retry, or gone before a load
                    status.state = END
                    if status.error:
                        log.info(
                            "version %d of %r is no longer wanted: its load retries are cancelled",
                            version,
                            self.model_name,
                        )
                status.retired = status.state == END
            after = self.current
            if after is not before:
                if after is None:
                    log.warning("no version of %r is available", self.model_name)
                else:
                    log.info(
                        "serving version %d of %r (was %s)",
                        after.version,
                        self.model_name,
                        before.version if before else "none",
                    )
                if self._on_switch is not None:
                    self._on_switch(after)
            return after

    def _try_load(self, version: int, path: Path) -> None:
        status = self._status.get(version)
        if status is None or status.retired:
            status = self._status[version] = VersionStatus(version)  # new, or wanted again
        if status.state == END or self._clock() < status.retry_at:
            return
        status.attempts += 1
        try:
            candidate = load_version(version, path)
            if self._warmup is not None:
                self._warmup(candidate, read_warmup_requests(str(path)))
        except Exception as err:  # a broken version must not take the server down
            status.error = self._without_root(bounded(f"{type(err).__name__}: {err}"))
            status.error_code = load_error_code(err)
            last = status.attempts > self.max_load_retries
            status.state = END if last else LOADING
            status.retry_at = self._clock() + self.retry_interval_s
            log.warning(
                "version %d of %r failed to load (attempt %d of %d%s): %s",
                version,
                self.model_name,
                status.attempts,
                self.max_load_retries + 1,
                ", giving up" if last else f", retrying in {self.retry_interval_s:g} s",
                status.error,
            )
            return
        self._loaded = {**self._loaded, version: candidate}
        status.state, status.error, status.error_code = AVAILABLE, "", error_codes_pb2.OK

    def _without_root(self, text: str) -> str:
        """`text` with the model's directory written `<model_name>`: an error a client reads
        names no path of the server's."""
        roots = {str(self.model_root), str(self.model_root.resolve())}
        for root in sorted(roots, key=len, reverse=True):
            text = text.replace(root, self.model_name)
        return text

    def start(self, poll_seconds: float) -> None:
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, got {poll_seconds}")
        self._thread = threading.Thread(
            target=self._loop, args=(poll_seconds,), name="version-poller", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self, poll_seconds: float) -> None:
        while not self._stop.wait(poll_seconds):
            try:
                self.poll()
            except Exception:  # e.g. the repository briefly unreadable: try again next poll
                log.exception("polling %s failed", self.model_root)
