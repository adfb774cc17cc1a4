"""The pretrain step: domain-pretrain the text encoder on the shop's engagement log (two
towers; components/pretrain/pretrain.py has the details), or, when switched off, only write a
marker so that the train step uses `encoder_preset` as it is.

Each train query's engaged products (click 1, add-to-cart 2, purchase 3) are ranked against
20 negatives per engaged product and the other queries' products of the batch, with a
listwise softmax loss: random catalog products, or with `hard_negatives` first the query's
own shown-but-not-engaged products. The encoder starts from `encoder_preset` ("tiny": from
scratch, with a WordPiece vocabulary learned from the catalog and the queries, offline; it
then needs `fine_tune_layers="all"`). With a pretrained preset only the top
`fine_tune_layers` transformer blocks and the projections train, over the lower blocks'
outputs computed once per distinct text, at a tenth of the projections' learning rate. The
output is a keras-hub preset directory (backbone, tokenizer, the two 256-d projections) that
the train step loads; the metrics are recall@10 and NDCG@10 of the eval split's engaged
products among 100 random ones, and NDCG@5 of each eval query's shown products in the
encoder's order, before and after pretraining.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import MutableMapping

from components.pretrain.pretrain import PretrainConfig, run_pretrain
from components.step_log import progress
from contract.layout import PRETRAIN_DISABLED_FILE


def pretrain_step(
    transform_dir: str,
    transformed_dir: str,
    encoder_dir: str,
    metadata: MutableMapping,
    metrics,
    enabled: bool,
    **settings,
) -> dict | None:
    """Pretrain into `encoder_dir` with the PretrainConfig `settings`, log the retrieval
    metrics before and after into `metrics` (anything with `log_metric`), fill `metadata`;
    when not `enabled`, write only the marker. Returns the pretraining's info, or None."""
    os.makedirs(encoder_dir, exist_ok=True)
    if not enabled:
        progress("skipped: pretrain_encoder is off; train uses encoder_preset as it is")
        with open(os.path.join(encoder_dir, PRETRAIN_DISABLED_FILE), "w", encoding="utf-8") as fh:
            fh.write("pretraining is switched off (pretrain_encoder=False)\n")
        metadata["enabled"] = False
        return None
    config = PretrainConfig(**settings)
    info = run_pretrain(transform_dir, transformed_dir, encoder_dir, config)
    for when in ("before", "after"):
        for name, value in info[f"eval_{when}"].items():
            if name != "queries" and not math.isnan(value):
                metrics.log_metric(f"eval_{name}_{when}", round(value, 5))
    metadata.update(
        {
            "enabled": True,
            "encoder_preset": config.encoder_preset,
            "fine_tune_layers": str(config.fine_tune_layers),
            "hard_negatives": config.hard_negatives,
            "seconds": info["seconds"],
        }
    )
    print(json.dumps(info, indent=2))
    return info
