"""One training process for the distribution tests, run as a script in a fresh interpreter:
`python distributed_run.py SETTINGS_JSON RESULT_JSON`.

SETTINGS: `step` ("train" or "pretrain"), `data` (the transformed_dataset root),
`model_dir`, `logical_cpus` (mirror over that many logical CPUs; 1: TF_CONFIG or the default
strategy), `config` (train_config's or PretrainConfig's keyword arguments) and, optionally,
`one_device_config`: run that first on the default strategy, in the same process. Writes each
run's history (pretrain: its loss per epoch), replicas and chief flag as JSON.
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

from components.train.distribute import Placement, placement  # noqa: E402

where = placement(devices=devices)

from components.pretrain.pretrain import PretrainConfig, run_pretrain  # noqa: E402
from components.train.config import train_config  # noqa: E402
from components.train.training import run_training  # noqa: E402

data = settings["data"]
paths = (os.path.join(data, "tft"), os.path.join(data, "tx"))


def run(config: dict, on: Placement, model_dir: str) -> dict:
    if settings["step"] == "pretrain":
        info = run_pretrain(*paths, model_dir, PretrainConfig(**config), where=on)
        return {"history": info["loss_by_epoch"], "replicas": on.replicas, "chief": True}
    result = run_training(*paths, model_dir, train_config(**config), verbose=0, where=on)
    return {"history": result.history, "replicas": result.replicas, "chief": on.is_chief}


results = {}
if "one_device_config" in settings:
    one = Placement(tf.distribute.get_strategy())
    results["one_device"] = run(settings["one_device_config"], one, settings["model_dir"] + "-one")
results.update(run(settings["config"], where, settings["model_dir"]))
with open(sys.argv[2], "w") as fh:
    json.dump(results, fh)
