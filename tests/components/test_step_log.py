"""A step's log keeps its own lines and loses the libraries' start-up noise
(components/step_log.py); progress lines are what the local view shows."""

import logging
import os
import subprocess
import sys

import pytest

from components import step_log

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What a step did before quiet(): TensorFlow's start-up lines, tfx-bsl's per-feature line,
# Beam's type-hint line (kfp's executor logs INFO to standard output).
STEP = """
import logging, sys
logging.basicConfig(stream=sys.stdout, level=logging.INFO)
{quiet}
import tensorflow as tf
print(float(tf.reduce_sum(tf.ones(3))))
from absl import logging as absl_logging
absl_logging.info("Feature price has a shape . Setting to DenseTensor.")
logging.getLogger("apache_beam.typehints.native_type_compatibility").info(
    'Converting string literal type hint to Any: "str"')
logging.getLogger("components.ingest.job").info("ingest counts: read 3 rows")
"""
NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cuda drivers", "DenseTensor",
         "Converting string literal")  # fmt: skip


def _run(quiet: str, level: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    done = subprocess.run(
        [sys.executable, "-c", STEP.format(quiet=quiet)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return done.stdout + done.stderr


def test_quiet_keeps_the_steps_lines_and_drops_the_libraries_noise():
    loud = _run("", None)
    assert [n for n in NOISE if n in loud] == list(NOISE)  # what a step printed before
    quiet = _run("from components.step_log import quiet; quiet()", None)
    assert [n for n in NOISE if n in quiet] == []
    assert "3.0" in quiet and "ingest counts: read 3 rows" in quiet


def test_a_user_asking_for_tensorflows_log_gets_it():
    shown = _run("from components.step_log import quiet; quiet()", "0")
    assert "oneDNN custom operations" in shown


def test_what_an_import_printed_is_shown_when_it_fails(capfd):
    with pytest.raises(RuntimeError), step_log._native_stderr_kept_aside():
        os.write(2, b"libfoo.so: cannot open shared object file\n")
        raise RuntimeError("import failed")
    assert "libfoo.so: cannot open shared object file" in capfd.readouterr().err
    with step_log._native_stderr_kept_aside():
        os.write(2, b"start-up chatter\n")
    assert "start-up chatter" not in capfd.readouterr().err


def test_progress_is_one_log_line(caplog):
    with caplog.at_level(logging.INFO, logger="mlpr.progress"):
        step_log.progress("epoch 2/8")
    assert caplog.messages == ["progress: epoch 2/8"]
