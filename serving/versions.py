"""The local server's view of the model repository: loads the newest version of a model,
replays its warmup requests, and swaps it in atomically while requests on the previous
version finish on that version.

`<model_base>/<model_name>/<version>/` as TF Serving reads it (components/push/repository.py):
numeric directories holding a SavedModel; anything else is ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops of the serving graph)
from tensorflow.core.protobuf import saved_model_pb2

from components.push.repository import SAVED_MODEL_PB, is_saved_model, numeric_versions
from serving.warmup import read_warmup_requests

log = logging.getLogger(__name__)


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


def load_version(version: int, path: Path) -> ServedVersion:
    loaded = tf.saved_model.load(str(path))
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / SAVED_MODEL_PB).read_bytes())
    defs = dict(proto.meta_graphs[0].signature_def)
    defs.pop("__saved_model_init_op", None)
    return ServedVersion(version, path, loaded, dict(loaded.signatures), defs)


class VersionManager:
    """Serves the newest loadable version of `model_name` under `model_base`.

    `poll()` loads a newer version when one appears (and replays its warmup requests
    through `warmup`), then switches to it in one assignment (and calls `on_switch`): a request holds the version
    it started with, so none fails during the switch. A version that fails to load is
    logged and skipped; the current one keeps serving.
    """

    def __init__(self, model_base: str, model_name: str, warmup=None, on_switch=None):
        self.model_root = Path(model_base) / model_name
        self.model_name = model_name
        self._warmup = warmup
        self._on_switch = on_switch
        self._current: ServedVersion | None = None
        self._failed: set[int] = set()
        self._lock = threading.Lock()  # one loader at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> ServedVersion | None:
        return self._current

    def poll(self) -> ServedVersion | None:
        """Load and switch to the newest version if it is newer than the served one."""
        with self._lock:
            for version, path in reversed(numeric_versions(self.model_root)):
                if self._current is not None and version <= self._current.version:
                    break
                if version in self._failed or not is_saved_model(path):
                    continue
                try:
                    candidate = load_version(version, path)
                    if self._warmup is not None:
                        self._warmup(candidate, read_warmup_requests(str(path)))
                except Exception:  # a broken version must not take the server down
                    log.exception("version %d of %r failed to load", version, self.model_name)
                    self._failed.add(version)
                    continue
                previous = self._current
                self._current = candidate
                if self._on_switch is not None:
                    self._on_switch(candidate)
                log.info(
                    "serving version %d of %r (was %s)",
                    version,
                    self.model_name,
                    previous.version if previous else "none",
                )
                break
            return self._current

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
            self.poll()
