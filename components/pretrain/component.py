"""Kubeflow component: pretrain the text encoder on the engagement log (optional step)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def pretrain(
    transform_graph: Input[Model],
    transformed_examples: Input[Dataset],
    encoder: Output[Model],
    metrics: Output[Metrics],
    enabled: bool = False,
    encoder_preset: str = "all-minilm-l6-v2",
    epochs: int = 3,
    hard_negatives: bool = False,
    seed: int = 0,
):
    """Pretrains the query and product text encoder (two towers) on the shop's engagement log.

    Each train query's engaged products (click 1, add-to-cart 2, purchase 3) are ranked
    against 20 negatives per engaged product with a listwise softmax loss: random catalog
    products, or with `hard_negatives` first the query's own shown-but-not-engaged products;
    the encoder starts from `encoder_preset` ("tiny": from scratch, with a WordPiece
    vocabulary learned from the catalog and the queries, offline). The output is a keras-hub preset
    directory (backbone, tokenizer, the two 256-d projections) that the train step loads;
    the metrics are recall@10 and NDCG@10 of the eval split's engaged products among 100
    random ones, and NDCG@5 of each eval query's shown products in the encoder's order,
    before and after pretraining. When `enabled` is false the step writes only a
    marker and the train step uses `encoder_preset` as it is.

    Args:
        transform_graph: the transform step's graph.
        transformed_examples: transformed train/eval/test splits.
        encoder: the pretrained preset directory (or the DISABLED marker).
        metrics: retrieval metrics on the eval split, before and after.
        enabled: run the pretraining (the pipeline's pretrain_encoder).
        encoder_preset: where the encoder starts, as in the train step.
        epochs: passes over the train queries.
        hard_negatives: the query's shown-but-not-engaged products are its first negatives.
        seed: seeds sampling and initialisation.
    """
    import json
    import math
    import os

    from contract.layout import PRETRAIN_DISABLED_FILE

    os.makedirs(encoder.path, exist_ok=True)
    if not enabled:
        with open(os.path.join(encoder.path, PRETRAIN_DISABLED_FILE), "w", encoding="utf-8") as fh:
            fh.write("pretraining is switched off (pretrain_encoder=False)\n")
        encoder.metadata["enabled"] = False
        return
    from components.pretrain.pretrain import PretrainConfig, run_pretrain

    config = PretrainConfig(
        encoder_preset=encoder_preset, epochs=epochs, hard_negatives=hard_negatives, seed=seed
    )
    info = run_pretrain(transform_graph.path, transformed_examples.path, encoder.path, config)
    for when in ("before", "after"):
        for name, value in info[f"eval_{when}"].items():
            if name != "queries" and not math.isnan(value):
                metrics.log_metric(f"eval_{name}_{when}", round(value, 5))
    encoder.metadata.update(
        {
            "enabled": True,
            "encoder_preset": encoder_preset,
            "hard_negatives": hard_negatives,
            "seconds": info["seconds"],
        }
    )
    print(json.dumps(info, indent=2))
