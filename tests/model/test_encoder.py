import keras
import keras_hub
import numpy as np
import pytest

from model.encoder import TextEncoder


def _distilbert():
    keras.utils.set_random_seed(1)
    return keras_hub.models.DistilBertBackbone(
        vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=6,
    )  # fmt: skip


def test_mean_pooling_ignores_padding():
    backbone = _distilbert()
    ids = np.array([[2, 7, 9, 3, 0, 0]], "int32")
    mask = np.array([[1, 1, 1, 1, 0, 0]], "int32")
    pooled = np.asarray(TextEncoder(backbone)({"token_ids": ids, "padding_mask": mask}))
    sequence = np.asarray(backbone({"token_ids": ids, "padding_mask": mask}))
    np.testing.assert_allclose(pooled, sequence[:, :4].mean(axis=1), rtol=1e-5, atol=1e-6)
    # Changing a padded position's token does not change the result.
    other = ids.copy()
    other[0, 5] = 11
    again = np.asarray(TextEncoder(backbone)({"token_ids": other, "padding_mask": mask}))
    np.testing.assert_allclose(again, pooled, rtol=1e-5, atol=1e-6)


def test_cls_pooling_takes_first_position():
    backbone = _distilbert()
    ids = np.array([[2, 7, 3, 0, 0, 0]], "int32")
    mask = (ids > 0).astype("int32")
    pooled = np.asarray(
        TextEncoder(backbone, pooling="cls")({"token_ids": ids, "padding_mask": mask})
    )
    sequence = np.asarray(backbone({"token_ids": ids, "padding_mask": mask}))
    np.testing.assert_allclose(pooled, sequence[:, 0], rtol=1e-5, atol=1e-6)


def test_bert_backbone_gets_segment_ids():
    """BERT-architecture presets (MiniLM) take segment_ids; the encoder supplies zeros."""
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=6,
    )  # fmt: skip
    ids = np.array([[2, 7, 3, 0, 0, 0]], "int32")
    mask = (ids > 0).astype("int32")
    pooled = np.asarray(TextEncoder(backbone)({"token_ids": ids, "padding_mask": mask}))
    sequence = backbone(
        {"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)}
    )["sequence_output"]
    np.testing.assert_allclose(
        pooled, np.asarray(sequence)[:, :3].mean(axis=1), rtol=1e-5, atol=1e-6
    )


def test_frozen_encoder_has_no_trainable_weights():
    encoder = TextEncoder(_distilbert(), fine_tune_layers=0)
    assert encoder.backbone.trainable_weights == []
    assert TextEncoder(_distilbert()).backbone.trainable_weights


def test_config_round_trip_and_validation():
    encoder = TextEncoder(_distilbert(), pooling="cls", fine_tune_layers=0)
    clone = TextEncoder.from_config(encoder.get_config())
    assert (clone.pooling, clone.fine_tune_layers, clone.output_dim) == ("cls", 0, 8)
    with pytest.raises(ValueError, match="pooling"):
        TextEncoder(_distilbert(), pooling="max")


def test_partial_fine_tuning_trains_only_the_top_blocks_and_splits_exactly():
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30, num_layers=3, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8,
    )  # fmt: skip
    encoder = TextEncoder(backbone, fine_tune_layers=2)
    blocks = backbone.transformer_layers
    assert not blocks[0].trainable_weights and blocks[1].trainable_weights
    trained = {id(w) for w in encoder.trainable_weights}
    assert trained == {id(w) for b in blocks[1:] for w in b.trainable_weights}
    ids = keras.ops.convert_to_tensor(np.arange(16, dtype="int32").reshape(2, 8) % 30)
    mask = keras.ops.convert_to_tensor((np.arange(8)[None, :] < [[5], [8]]).astype("int32"))
    whole = encoder({"token_ids": ids, "padding_mask": mask})
    hidden = encoder.lower_model()(encoder.lower_inputs(ids, mask))
    assert tuple(hidden.shape) == (2, 8, 8)
    np.testing.assert_allclose(
        np.asarray(encoder.encode_top(hidden, mask)), np.asarray(whole), atol=1e-6
    )


def test_fine_tune_layers_is_checked():
    with pytest.raises(ValueError, match="has 1 transformer layers"):
        TextEncoder(_distilbert(), fine_tune_layers=2)
    with pytest.raises(ValueError, match="'some'"):
        TextEncoder(_distilbert(), fine_tune_layers="some")
    assert TextEncoder(_distilbert(), fine_tune_layers="1").fine_tune_layers == 1
