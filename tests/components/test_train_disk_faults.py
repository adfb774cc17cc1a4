"""Disk faults in the train step (components/disk_faults.py): the volume of the model
artifact fills up or goes read-only while the step trains or exports; the step ends with one
line naming the path and the reason, the model files written so far are removed (the backup of
the last whole epoch stays), and the retry resumes from that backup and ends with the model of
a run that never failed.

Each run of the step is a process of its own, as on Kubeflow: HDF5 cannot close a file it
failed to write and would crash the process as it exits (the step ends it first). A run takes
half a minute or more, so the tests that compare a retry with a run that never failed are
`large`; the default run checks the step's line on HDF5's failure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
from disk_testlib import files, mounted

from conftest import SMALL_RANKER, synthetic_splits, transformed_dataset
from contract import layout
from contract import schema as S

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FREE = "free space on that volume and retry the run; nothing of this step was published"

# One run of the train step (as its component calls it), with a fault at a chosen moment;
# prints its result and a digest of the model's weights.
_STEP = textwrap.dedent(
    """
    import hashlib, json, logging, os, subprocess, sys
    from components.step_log import quiet

    logging.basicConfig(stream=sys.stdout, level=logging.INFO)  # as kfp's executor does
    quiet()
    from kfp import dsl

    from components.train import backup, step, training
    from components.train.selection import RankingSelection

    sys.path.insert(0, os.path.join("tests", "components"))
    from disk_testlib import fill

    data, model_dir, fault, volume, small = sys.argv[1:6]

    def after(cls, name, act):
        real = getattr(cls, name)

        def patched(*args, **kwargs):
            result = real(*args, **kwargs)
            act(*args, **kwargs)
            return result

        setattr(cls, name, patched)

    def before(owner, name, act):
        real = getattr(owner, name)

        def patched(*args, **kwargs):
            act()
            return real(*args, **kwargs)

        setattr(owner, name, patched)

    if fault == "full-after-epoch-1":  # the volume fills up once the first epoch is backed up
        after(backup.EpochBackup, "save", lambda self, epoch, *a, **k: epoch == 0 and fill(volume))
    elif fault == "full-before-fit":  # ... once the text cache is written
        before(RankingSelection, "on_train_begin", lambda: fill(volume))
    elif fault == "read-only-at-export":  # ... goes read-only once model.keras is written
        remount = ["mount", "-o", "remount,ro", volume]
        before(training, "export_serving_model", lambda: subprocess.run(remount, check=True))
    # The small MLPR of the training tests, through the step's own settings.
    real_config = step.step_config
    step.step_config = lambda s, preset, cache: real_config({**s, **json.loads(small)}, preset, cache)
    result = step.train_step(
        os.path.join(data, "tft"), os.path.join(data, "tx"), os.path.join(data, "pretrained"),
        model_dir, {}, dsl.Metrics(uri=os.path.join(data, "metrics")),
        architecture="mlpr", encoder_preset="tiny", fine_tune_layers="0", text_cache_dir="",
        max_epochs=2, batch_size=64, learning_rate=0.001, seed=0, precision="float32",
    )
    import keras

    model = keras.saving.load_model(os.path.join(model_dir, "model.keras"))
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(weight.tobytes())
    print(json.dumps({
        "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
        "history": result.history, "weights": digest.hexdigest(),
    }))
    """
)


def _step(data, model_dir, fault: str = "", volume="") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _STEP, str(data), str(model_dir), fault, str(volume)]
        + [json.dumps(SMALL_RANKER)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _result(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _failed(done: subprocess.CompletedProcess) -> str:
    """The one line a failed step ended with; no traceback before it."""
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    transformed_dataset(root, synthetic_splits(128, 48, 48), S.DEMO_SCHEMA)
    (root / "pretrained").mkdir()  # the pretrain step was off
    (root / "pretrained" / layout.PRETRAIN_DISABLED_FILE).write_text("off\n")
    return root


@pytest.fixture(scope="module")
def clean(data, tmp_path_factory):
    """A run that never failed: its result and its files."""
    out = tmp_path_factory.mktemp("clean") / "model"
    return _result(_step(data, out)), files(out)


def _backup_epoch(model_dir) -> int:
    state = model_dir / "backup" / "current" / "state.json"
    return json.loads(state.read_text())["epoch"]


@pytest.mark.large
def test_a_full_volume_mid_training_and_the_retry_resumes(data, clean, tmp_path, request):
    clean_result, clean_files = clean
    with mounted(tmp_path / "volume", "64m", request) as volume:
        model_dir = volume.path / "model"
        line = _failed(_step(data, model_dir, "full-after-epoch-1", volume.path))
        # The second epoch's first write fails: its best weights' checkpoint or its backup.
        written = (
            re.escape(str(model_dir))
            + r"/(checkpoints/best\.weights\.h5|backup/\.backup-\w+/arrays\.npz)"
        )
        assert re.fullmatch(
            f"train: error: no space left on device while writing {written}: {FREE}", line
        )
        # No model file, no half-written backup: the first epoch's backup and the text cache.
        left = files(model_dir)
        assert left and all(f.startswith(("backup/current/", "backup/text_cache/")) for f in left)
        assert _backup_epoch(model_dir) == 0
        volume.free()
        retry = _step(data, model_dir)
        assert "progress: resuming after epoch 1 of 2" in retry.stdout
        assert _result(retry) == clean_result  # the same history and weights, to the bit
        assert files(model_dir) == clean_files


@pytest.mark.parametrize("retry", [False, pytest.param(True, marks=pytest.mark.large)])
def test_a_full_volume_in_hdf5_ends_the_step_with_its_line(data, tmp_path, request, retry):
    with mounted(tmp_path / "volume", "64m", request) as volume:
        model_dir = volume.path / "model"
        # The untrained model's checkpoint is the first HDF5 file written. HDF5 cannot close
        # it, and the process would crash as it exits (status 139, h5py's tracebacks).
        line = _failed(_step(data, model_dir, "full-before-fit", volume.path))
        checkpoint = model_dir / "checkpoints" / "best.weights.h5"
        assert line == f"train: error: no space left on device while writing {checkpoint}: {FREE}"
        assert all(f.startswith("backup/text_cache/") for f in files(model_dir))
        if retry:  # no epoch was backed up: the retry trains from the start
            clean_result, clean_files = request.getfixturevalue("clean")
            volume.free()
            assert _result(_step(data, model_dir)) == clean_result
            assert files(model_dir) == clean_files


@pytest.mark.large
def test_a_read_only_volume_at_export_and_the_retry_exports(data, clean, tmp_path, request):
    clean_result, clean_files = clean
    with mounted(tmp_path / "volume", "64m", request) as volume:
        model_dir = volume.path / "model"
        line = _failed(_step(data, model_dir, "read-only-at-export", volume.path))
        # model.keras was written before the volume went read-only: it cannot be removed.
        pattern = (
            r"train: error: read-only file system while writing (\S+): mount that volume "
            r"read-write and retry the run; could not remove (\S+) and (\d+) more "
            "either, which a retry replaces"
        )
        written, first, more = re.fullmatch(pattern, line).groups()
        # The export's first write: the text cache takes the catalog's products that no split
        # trained on (the test split's).
        assert re.fullmatch(
            re.escape(str(model_dir)) + r"/backup/text_cache/\.staging-\w+", written
        )
        assert first == str(model_dir / layout.KERAS_MODEL_FILE) and int(more) >= 2
        assert _backup_epoch(model_dir) == 1  # both epochs are backed up
        volume.read_write()
        retry = _step(data, model_dir)
        assert "progress: resuming after epoch 2 of 2" in retry.stdout
        assert _result(retry) == clean_result
        assert files(model_dir) == clean_files
