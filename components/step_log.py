"""What a step writes to its log: its own lines and progress, without the libraries' noise.

Every component calls `quiet()` first, before TensorFlow, Beam or tensorflow-transform are
imported, so the step's log (the Kubeflow UI's, or `<run>/logs/<step>.log` of a local run)
keeps the step's own lines and the libraries' warnings and errors, and loses their start-up
and per-feature chatter:

- TensorFlow's C++ log: `TF_CPP_MIN_LOG_LEVEL` 3 unless already set (set it to 0 to see it
  all again). TensorFlow 2.21 still prints a few lines while it loads (oneDNN, CUDA drivers,
  absl's "before InitializeLog" notice) whatever that variable says (tensorflow#100442), so
  that import runs with the process's standard error kept aside; it is shown when the import
  fails.
- Python loggers at WARNING: Apache Beam ("Converting string literal type hint to Any",
  shard renames; Dataflow's job messages stay at INFO), absl (tfx-bsl's "Feature X has a
  shape ... Setting to DenseTensor" for every feature, tensorflow-transform's notices) and
  TensorFlow's ("Assets written to").

`progress(message)` logs one line a person follows: `progress: <message>`. The local run's
live view (local/view.py) shows the latest one beside its step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

PROGRESS_PREFIX = "progress: "
# Library loggers whose INFO lines are noise in a step's log.
QUIET_LOGGERS = ("apache_beam", "absl", "tensorflow", "tensorflow_transform", "tfx_bsl", "h5py")
# ...but Dataflow's job messages (the job's URL, its state) are what a user looks for.
KEEP_INFO = ("apache_beam.runners.dataflow",)

logger = logging.getLogger("mlpr.progress")


def progress(message: str) -> None:
    """Log a progress line of the running step (`progress: epoch 2/8, loss 0.41`)."""
    logger.info(PROGRESS_PREFIX + message)
    # Keep the line in order with what the step prints (kfp logs to standard output).
    for stream in (sys.stdout, sys.stderr):
        stream.flush()


@contextlib.contextmanager
def _native_stderr_kept_aside():
    """Run the block with file descriptor 2 writing into a temporary file; replay what was
    written there when the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as kept:
        os.dup2(kept.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            kept.seek(0)
            sys.stderr.write(kept.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet(tensorflow: bool = True) -> None:
    """Silence the known noise of the libraries a step uses (see the module docstring);
    with `tensorflow`, import TensorFlow now, quietly. Idempotent."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in KEEP_INFO:
        logging.getLogger(name).setLevel(logging.INFO)
    if tensorflow and "tensorflow" not in sys.modules:
        if os.environ["TF_CPP_MIN_LOG_LEVEL"] in ("0", ""):
            import tensorflow as tf  # noqa: F401  (the user asked for every line)
        else:
            with _native_stderr_kept_aside():
                import tensorflow as tf  # noqa: F401
        # absl's Python logger (tfx-bsl, tensorflow-transform) gets its level from absl's
        # flags once TensorFlow is loaded; set it again.
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
