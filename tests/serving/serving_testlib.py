"""Helpers of the serving tests: one small trained ranker shared by every serving test module
(synthetic rows -> the real transform -> one epoch of training -> the serving export), rows
whose products are in its pre-computed catalog, request inputs built from rows, and the local
server started over a repository holding it."""

from __future__ import annotations

import contextlib
import os

from components.train.config import TrainConfig
from contract import layout
from contract import schema as S
from model.config import RankerConfig

CONFIG = TrainConfig(
    max_epochs=1,
    batch_size=32,
    ranker=RankerConfig(
        projection_dim=16, num_shared_experts=2, expert_units=(32, 16), tower_units=(8,)
    ),
)
TRAIN_ROWS = (
    128  # the train split is synthetic_rows(TRAIN_ROWS, 0): its products are in the catalog
)
_CACHE: dict = {}
FEATURES = list(S.DEMO_SCHEMA.feature_names)
BLESSED = {"blessed": True, "reasons": ["test"]}
MAX_CANDIDATES = 64


def trained_model(tmp_path_factory) -> tuple:
    """(root holding tft/ tx/ model/, the SavedModel directory), trained once per session."""
    if "model" not in _CACHE:
        from components.train.training import run_training
        from conftest import synthetic_splits, transformed_dataset

        root = tmp_path_factory.mktemp("serving_model")
        transformed_dataset(root, synthetic_splits(TRAIN_ROWS, 32, 32), S.DEMO_SCHEMA)
        run_training(str(root / "tft"), str(root / "tx"), str(root / "model"), CONFIG, verbose=0)
        _CACHE["model"] = (root, os.path.join(root, "model", layout.SAVED_MODEL_DIR))
    return _CACHE["model"]


def loaded_model(saved_model_dir: str):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the TF Text ops of the serving graph)

    if saved_model_dir not in _CACHE:
        _CACHE[saved_model_dir] = tf.saved_model.load(saved_model_dir)
    return _CACHE[saved_model_dir]


def catalog_rows(n: int, query: str | None = None) -> list[dict]:
    """n rows whose products are in the catalog (all under `query` when given)."""
    from conftest import synthetic_rows

    rows = synthetic_rows(TRAIN_ROWS, 0)[:n]
    return [{**r, S.QUERY: query} for r in rows] if query is not None else rows


def named_inputs(signature, rows: list[dict]) -> dict:
    """Tensors for a signature function: one entry per row for each of its inputs."""
    import tensorflow as tf

    inputs = {}
    for name, spec in signature.structured_input_signature[1].items():
        if spec.dtype == tf.string:
            inputs[name] = tf.constant([str(r[name]) for r in rows])
        else:
            inputs[name] = tf.constant([float(r[name]) for r in rows], tf.float32)
    return inputs


@contextlib.contextmanager
def local_server(saved_model_dir: str, repository, poll_seconds: float):
    """The local server over a new repository where `saved_model_dir` is pushed as version 1:
    yields (server, "host:port", repository) and stops it after."""
    from components.push.publish import push_model
    from serving.server import ModelServer

    push_model(saved_model_dir, str(repository), "mlpr", BLESSED)
    server = ModelServer(str(repository), "mlpr", max_candidates=MAX_CANDIDATES, workers=8)
    port = server.start("127.0.0.1", 0, poll_seconds=poll_seconds)
    try:
        yield server, f"127.0.0.1:{port}", repository
    finally:
        server.stop()
