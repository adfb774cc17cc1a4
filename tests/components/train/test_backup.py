"""Resumable training (components/train/backup.py): a train step SIGKILLed after an epoch, or
while writing its backup, starts again where the last whole backup left it and ends with the
same model as a run never interrupted, to the bit (on one machine; dropout and the shuffle
included)."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from components.train.backup import CURRENT, STATE_FILE, EpochBackup
from components.train.config import train_config
from components.train.training import run_training
from conftest import SMALL_RANKER, TINY_TRAINING, synthetic_splits, transformed_dataset
from contract import layout
from contract import schema as S

SETTINGS = dict(
    TINY_TRAINING,
    max_epochs=4,
    # Every epoch runs (no early stop within 4), chosen for ranking as by default.
    early_stopping_patience=4,
    # Dynamic Weight Average: a callback with a state of its own, restored too.
    **SMALL_RANKER,
    loss_balancing="dwa",
)

# Trains in a child process that SIGKILLs itself at a chosen point, as a preempted pod dies.
_KILLED_RUN = textwrap.dedent(
    """
    import json, os, signal, sys
    import numpy as np
    from components.train import backup
    from components.train.config import train_config
    from components.train.training import run_training

    root, out, settings, where = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    save = backup.EpochBackup.save

    def killing_save(self, epoch, *args, **kwargs):
        if where == "while-writing" and epoch == 2:
            # Killed half-way through writing the backup of epoch 3: its arrays are written,
            # the swap has not happened.
            real = np.savez
            def savez_then_die(*a, **k):
                real(*a, **k)
                os.kill(os.getpid(), signal.SIGKILL)
            np.savez = savez_then_die
        save(self, epoch, *args, **kwargs)
        if where == "after-epoch" and epoch == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    backup.EpochBackup.save = killing_save
    config = train_config(**settings)
    run_training(os.path.join(root, "tft"), os.path.join(root, "tx"), out, config, verbose=0)
    """
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("backup")
    transformed_dataset(root, synthetic_splits(384, 64, 64), S.DEMO_SCHEMA)
    return root


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    config = train_config(**SETTINGS, backup_dir=str(out / "backup"))
    result = run_training(str(data / "tft"), str(data / "tx"), str(out), config, verbose=0)
    assert not os.path.exists(out / "backup")  # removed once the model is written
    return result, _weights(out)


def _weights(out) -> list[np.ndarray]:
    model = keras.saving.load_model(str(out / layout.KERAS_MODEL_FILE))
    return [keras.ops.convert_to_numpy(v) for v in model.variables]


def _killed_run(data, out, where: str) -> int:
    settings = {**SETTINGS, "backup_dir": str(out / "backup")}
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, str(data), str(out), json.dumps(settings), where],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    with open(out / "backup" / CURRENT / STATE_FILE, encoding="utf-8") as f:
        return json.load(f)["epoch"]


@pytest.mark.parametrize(("where", "saved_epoch"), [("after-epoch", 1), ("while-writing", 1)])
def test_a_killed_train_step_resumes_and_ends_with_the_same_model(
    data, uninterrupted, tmp_path, where, saved_epoch, caplog
):
    whole_result, whole_weights = uninterrupted
    # The last whole backup is that of epoch 2 (index 1); a kill while writing the next one
    # leaves it as it was.
    assert _killed_run(data, tmp_path, where) == saved_epoch
    config = train_config(**SETTINGS, backup_dir=str(tmp_path / "backup"))
    with caplog.at_level(logging.INFO):
        result = run_training(str(data / "tft"), str(data / "tx"), str(tmp_path), config, verbose=0)
    assert "resuming after epoch 2 of 4" in caplog.text
    # The resumed run trained epochs 3 and 4 only, and its model is the uninterrupted one's.
    assert result.epochs_run == whole_result.epochs_run == 4
    assert result.best_epoch == whole_result.best_epoch
    assert result.history == whole_result.history
    weights = _weights(tmp_path)
    assert len(weights) == len(whole_weights)
    for mine, theirs in zip(weights, whole_weights, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert not os.path.exists(tmp_path / "backup")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".backup-")]


def test_a_backup_of_another_model_is_a_clear_error(data, tmp_path):
    backup = EpochBackup(str(tmp_path / "backup"))
    backup.save(0, [keras.Variable(np.zeros(3))], {"loss": [1.0]}, [], False)
    config = train_config(**SETTINGS, backup_dir=str(tmp_path / "backup"))
    with pytest.raises(ValueError, match="another model's; remove it to start over"):
        run_training(str(data / "tft"), str(data / "tx"), str(tmp_path / "m"), config, verbose=0)
