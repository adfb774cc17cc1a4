import keras_hub
import pytest
import tensorflow as tf

from model.presets import RESERVED_TOKENS, learn_vocabulary, resolve_preset
from model.text_preprocessor import TextPreprocessor

VOCAB = [*RESERVED_TOKENS, "red", "shoes", "sofa", "##s"]


def test_packs_with_cls_sep_and_padding():
    tok = keras_hub.models.DistilBertTokenizer(vocabulary=VOCAB, lowercase=True)
    out = TextPreprocessor(tok, query_length=5, product_length=4)(
        tf.constant(["Red shoes", "sofas"]), tf.constant(["red red red red", "unknownword"])
    )
    # [CLS]=2, [SEP]=3, [PAD]=0, [UNK]=1; "sofas" -> "sofa" "##s".
    assert out["query_token_ids"].numpy().tolist() == [[2, 5, 6, 3, 0], [2, 7, 8, 3, 0]]
    assert out["query_padding_mask"].numpy().astype(int).tolist() == [[1, 1, 1, 1, 0]] * 2
    # Truncated to the packed length with [SEP] kept; an unknown word becomes [UNK].
    assert out["product_token_ids"].numpy().tolist() == [[2, 5, 5, 3], [2, 1, 3, 0]]


def test_tokenizer_survives_the_preset_round_trip(tmp_path):
    """Training saves the tokenizer into the encoder preset; serving code loads it back."""
    tok = keras_hub.models.DistilBertTokenizer(vocabulary=VOCAB, lowercase=True)
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16
    )
    backbone.save_to_preset(str(tmp_path))
    tok.save_to_preset(str(tmp_path))
    restored = keras_hub.models.Tokenizer.from_preset(str(tmp_path))
    texts = tf.constant(["red sofas", "shoes"])
    a = TextPreprocessor(tok, 6, 9)(texts, texts)
    b = TextPreprocessor(restored, 6, 9)(texts, texts)
    for key in a:
        assert a[key].numpy().tolist() == b[key].numpy().tolist()
    config = TextPreprocessor(tok, 6, 9).get_config()
    assert (config["query_length"], config["product_length"]) == (6, 9)
    with pytest.raises(ValueError, match="query_length"):
        TextPreprocessor(tok, 2, 9)


def test_learned_vocabulary_has_reserved_tokens_and_words():
    # Words seen at least 10 times become whole tokens.
    vocab = learn_vocabulary(["red running shoes", "Red couch", "oak desk"] * 12, 100)
    assert vocab[: len(RESERVED_TOKENS)] == list(RESERVED_TOKENS)
    assert {"red", "running", "couch", "oak"} <= set(vocab)  # lower-cased


def test_resolve_preset_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        resolve_preset(str(tmp_path / "missing"))
    assert resolve_preset("distil_bert_base_en_uncased") == "distil_bert_base_en_uncased"
