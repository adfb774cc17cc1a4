"""Kubeflow component: push a blessed model into the TF Serving model repository."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def push(
    model: Input[Model],
    blessing: Input[Artifact],
    serving_config: Output[Artifact],
    model_base: str,
    model_name: str = "mlpr",
    serving_base: str = "/models",
    serving_batching: str = "gpu",
) -> NamedTuple("PushOutputs", [("pushed", bool), ("pushed_uri", str), ("reason", str)]):
    """Pushes a blessed model as the next TF Serving version; see components/push/publish.py.

    Args:
        model: the trained candidate; its SavedModel is in model/saved_model.
        blessing: the evaluate step's blessing (blessing.json inside).
        model_base: root of the TF Serving model repository (a mounted path).
        model_name: the model's directory under model_base.
        serving_base: where the TF Serving container mounts model_base (models.config
            points at <serving_base>/<model_name>).
        serving_batching: "gpu" or "cpu": the batching.config profile.
        serving_config: the TF Serving config files written with the push (models.config,
            batching.config, monitoring.config), also kept in model_base/tfserving/.

    Returns:
        pushed: whether a new version was written.
        pushed_uri: the new version directory, or "" when nothing was pushed.
        reason: what happened and why.
    """
    from components.step_log import quiet

    quiet()  # before TensorFlow loads (components/step_log.py)
    from components.lifeline import follow_runner

    follow_runner()  # a local run's step ends with the run (components/lifeline.py)

    from components.push.publish import push_step

    return push_step(
        model.path,
        blessing.path,
        serving_config.path,
        model_base,
        model_name,
        serving_base,
        serving_batching,
    )
