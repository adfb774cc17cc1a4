"""One training process for the distribution tests, run as a script in a fresh interpreter:
`python distributed_run.py SETTINGS_JSON RESULT_JSON`.

SETTINGS: `data` (the transformed_dataset root), `model_dir`, `logical_cpus` (mirror over
that many logical CPUs; 1: TF_CONFIG or the default strategy) and `config`: train_config's
keyword arguments. Writes the TrainResult's history, replicas and chief flag as JSON.
"""

import json
import os
import sys

import tensorflow as tf

with open(sys.argv[1]) as fh:
    settings = json.load(fh)
devices = None
if settings["logical_cpus"] > 1:  # before any other TensorFlow work
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * settings["logical_cpus"]
    )
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]

from components.train.distribute import placement  # noqa: E402

where = placement(devices=devices)

from components.train.config import train_config  # noqa: E402
from components.train.training import run_training  # noqa: E402

data = settings["data"]
result = run_training(
    os.path.join(data, "tft"),
    os.path.join(data, "tx"),
    settings["model_dir"],
    train_config(**settings["config"]),
    verbose=0,
    where=where,
)
with open(sys.argv[2], "w") as fh:
    json.dump({"history": result.history, "replicas": result.replicas, "chief": where.is_chief}, fh)
