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
    """Copies the blessed model into model_base/model_name/<next version>/ for TF Serving.

    The new version is written under a hidden name and renamed into place, so TF Serving never
    loads a half-copied model. A model whose blessing is not positive is refused and nothing is
    written.

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
    import json
    import os
    import shutil
    from collections import namedtuple

    from components.push.publish import push_model
    from contract import layout

    blessing_file = os.path.join(blessing.path, layout.BLESSING_FILE)
    with open(blessing_file, encoding="utf-8") as f:
        verdict = json.load(f)
    result = push_model(
        os.path.join(model.path, layout.SAVED_MODEL_DIR),
        model_base,
        model_name,
        verdict,
        serving_base=serving_base,
        batching_profile=serving_batching,
    )
    print(result.reason)
    os.makedirs(serving_config.path, exist_ok=True)
    if result.config_dir:
        for name in sorted(os.listdir(result.config_dir)):
            if not name.startswith("."):
                shutil.copy2(os.path.join(result.config_dir, name), serving_config.path)
        print(f"TF Serving config: {result.config_dir}")
    outputs = namedtuple("PushOutputs", ["pushed", "pushed_uri", "reason"])
    return outputs(result.pushed, result.uri or "", result.reason)
