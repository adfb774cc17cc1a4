"""Kubeflow component: push a blessed model into the TF Serving model repository."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def push(
    model: Input[Model],
    blessing: Input[Artifact],
    model_base: str,
    model_name: str = "mlpr",
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

    Returns:
        pushed: whether a new version was written.
        pushed_uri: the new version directory, or "" when nothing was pushed.
        reason: what happened and why.
    """
    import json
    import os
    from collections import namedtuple

    from components import layout
    from components.push.push import push_model

    blessing_file = os.path.join(blessing.path, layout.BLESSING_FILE)
    with open(blessing_file, encoding="utf-8") as f:
        verdict = json.load(f)
    result = push_model(
        os.path.join(model.path, layout.SAVED_MODEL_DIR), model_base, model_name, verdict
    )
    print(result.reason)
    outputs = namedtuple("PushOutputs", ["pushed", "pushed_uri", "reason"])
    return outputs(result.pushed, result.uri or "", result.reason)
