"""The train command line (`python -m components.train`) for the hang tests, but this process
stops moving as epoch N begins: its training loop waits for ever in a callback, alive (its
threads run, TensorFlow's coordination service hears from it), as a callback writing to a hung
volume would. `python stalling_cli.py N <the command line's arguments>`."""

import sys
import threading

import keras

from components.train import loop
from components.train.__main__ import main

STALL_AT = int(sys.argv.pop(1))
_fit = loop.fit


class Stall(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == STALL_AT:
            threading.Event().wait()


def _stalling_fit(*args, callbacks, **kwargs):
    return _fit(*args, callbacks=[Stall(), *callbacks], **kwargs)


loop.fit = _stalling_fit
main(prog_name="components.train")
