"""The rankers the serving benchmarks serve: trained for one epoch on the demo shop with the
pipeline's own code and pushed into a model repository (`train_and_push`), for
serving_latency.py, serving_profile.py and swap_time.py alike.

Each trains with the pipeline's settings (components/train/config.train_config), changed only
by its encoder and TRAIN_CHANGES; serving runs the same graph whatever the training settings.
"""

from __future__ import annotations

import os

ENCODERS = {
    # name -> (what it is, the keras-hub DistilBertBackbone size or None for the default preset)
    "tiny": ("random, learned from the log (DistilBERT architecture, 2x64)", None),
    "base": (
        "DistilBERT-base size (6x768, 12 heads, random weights)",
        {"num_layers": 6, "num_heads": 12, "hidden_dim": 768, "intermediate_dim": 3072},
    ),
    "minilm": ("all-MiniLM-L6-v2, pretrained (6x384), the pipeline's default", None),
}
# What a served ranker changes from the pipeline's training settings, and why.
TRAIN_CHANGES = {
    "max_epochs": "1: these benchmarks time the served model, not its quality",
    "encoder_preset": "the encoder measured: tiny, a DistilBERT-base-size preset, or MiniLM "
    "(the pipeline's)",
    "fine_tune_layers": "all with tiny: a random encoder learns only when it trains (the others "
    "stay frozen, as in the pipeline)",
}


def base_size_preset(texts, out_dir: str, size: dict, seed: int) -> str:
    """A keras-hub preset directory holding a random DistilBERT backbone of `size` and a
    WordPiece tokenizer learned from `texts` (the vocabulary size does not change latency)."""
    import keras
    import keras_hub

    from model.presets import learn_vocabulary

    vocabulary = learn_vocabulary(texts, 8000)
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=len(vocabulary), max_sequence_length=512, dropout=0.1, **size
    )
    tokenizer = keras_hub.models.DistilBertTokenizer(vocabulary=vocabulary, lowercase=True)
    backbone.save_to_preset(out_dir)
    tokenizer.save_to_preset(out_dir)
    return out_dir


def serving_train_config(encoder: str, preset: str, seed: int):
    """The TrainConfig of a served ranker with `encoder` (of ENCODERS) from `preset`: the
    pipeline's settings (train_config) for one epoch, the encoder fine-tuned when "tiny"."""
    from components.train.config import train_config

    tuned = {"fine_tune_layers": "all"} if encoder == "tiny" else {}
    return train_config(encoder_preset=preset, max_epochs=1, seed=seed, **tuned)


def encoder_preset(encoder: str, log, work: str, seed: int) -> str:
    """The preset of `encoder`: "tiny", MiniLM, or a base-size preset written under `work`
    (its vocabulary learned from the `log`'s queries and titles)."""
    from contract import schema as S
    from model.presets import MINILM, TINY

    if encoder == "base":
        texts = list(log[S.QUERY].unique()) + list(log[S.TITLE].unique())
        return base_size_preset(texts, os.path.join(work, "base_preset"), ENCODERS["base"][1], seed)
    return MINILM if encoder == "minilm" else TINY


def train_and_push(encoder: str, log, paths: tuple, work: str, seed: int) -> tuple[str, str]:
    """Train one epoch with `encoder`, push the export; returns (model_base, saved model)."""
    from components.push.publish import push_model
    from components.train.training import run_training

    _, tft_dir, transformed = paths
    config = serving_train_config(encoder, encoder_preset(encoder, log, work, seed), seed)
    out = os.path.join(work, f"model_{encoder}")
    run_training(tft_dir, transformed, out, config, verbose=0)
    model_base = os.path.join(work, f"serving_{encoder}")
    saved_model = os.path.join(out, "saved_model")
    pushed = push_model(
        saved_model, model_base, "mlpr", {"blessed": True, "reasons": ["benchmark"]}
    )
    return model_base, pushed.uri
