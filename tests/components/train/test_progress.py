"""The train step's progress lines (components/train/progress.py)."""

import logging

from components.train import progress as P


def test_epoch_lines_with_losses_and_time_left(caplog, monkeypatch):
    clock = iter([0.0, 10.0, 10.0, 30.0, 30.0, 31.0, 46.0])
    monkeypatch.setattr(P.time, "monotonic", lambda: next(clock))
    lines = P.ProgressLines(epochs=3, steps_per_epoch=40, every=15.0)
    with caplog.at_level(logging.INFO, logger="mlpr.progress"):
        lines.on_epoch_begin(0)  # t 0
        lines.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.625, "click_auc": 0.7})  # t 10
        lines.on_epoch_begin(1)  # t 10
        lines.on_epoch_end(1, {"loss": 0.25, "val_loss": 0.5})  # t 30
        lines.on_epoch_begin(2)  # t 30
        lines.on_train_batch_end(4)  # t 31: too soon for a line
        lines.on_train_batch_end(19)  # t 46: 16 s since the last
    assert caplog.messages == [
        "progress: epoch 1/3",
        "progress: epoch 1/3 done in 10 s: loss 0.5000, val_loss 0.6250; at most 20 s left",
        "progress: epoch 2/3",
        "progress: epoch 2/3 done in 20 s: loss 0.2500, val_loss 0.5000; at most 15 s left",
        "progress: epoch 3/3",
        "progress: epoch 3/3 step 20/40",
    ]
