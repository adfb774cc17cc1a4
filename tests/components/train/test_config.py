"""train_config: the pipeline's default training settings, changed only where a caller says."""

import pytest

from components.train.config import (
    RANKER_FIELDS,
    STEP_DEFAULTS,
    TRAIN_FIELDS,
    TrainConfig,
    changed_settings,
    settings_of,
    train_config,
)
from model.architectures import architecture


def test_without_changes_it_is_the_pipelines_default():
    config = train_config()
    assert (config.architecture, config.encoder_preset) == ("mlpr", "all-minilm-l6-v2")
    assert config.ranker == architecture("mlpr").replace(fine_tune_layers=0)  # frozen
    assert (config.max_epochs, config.batch_size, config.learning_rate) == (8, 128, 0.001)
    assert (config.seed, config.precision, config.text_cache_dir) == (0, "auto", None)
    # What the pipeline does not set keeps TrainConfig's own.
    assert (config.targets, config.select_on) == (TrainConfig.targets, TrainConfig.select_on)
    # The step's parameters are its spellings of these settings.
    assert STEP_DEFAULTS["fine_tune_layers"] == "0" and STEP_DEFAULTS["text_cache_dir"] == ""


def test_only_the_named_settings_change():
    config = train_config(max_epochs=2, encoder_preset="tiny", position_buckets=20, targets="any")
    assert changed_settings(config) == {
        "max_epochs": (8, 2),
        "encoder_preset": ("all-minilm-l6-v2", "tiny"),
        "position_buckets": (0, 20),
        "targets": ("rate", "any"),
    }
    assert changed_settings(train_config()) == {}
    assert changed_settings(train_config(seed=3), train_config(seed=3)) == {}


def test_the_steps_spellings():
    assert train_config(fine_tune_layers="all").ranker_config.fine_tune_layers == "all"
    assert train_config(fine_tune_layers=2) == train_config(fine_tune_layers="2")
    assert train_config(text_cache_dir="").text_cache_dir is None
    assert train_config(text_cache_dir="/c").text_cache_dir == "/c"
    listwise = train_config(listwise_tasks="click, purchase").ranker_config.listwise_tasks
    assert listwise == ("click", "purchase")
    assert train_config(listwise_tasks=("atc",)).ranker_config.listwise_tasks == ("atc",)
    # "" (or False): the architecture's own; a baseline weighs its tasks 1 each.
    assert train_config(architecture="mmoe", loss_balancing="").ranker_config.loss_balancing == (
        "fixed"
    )
    assert train_config(architecture="mmoe", loss_balancing="dwa").ranker_config.loss_balancing == (
        "dwa"
    )
    masked = train_config(region_mask=True, relevance_task=True).ranker_config
    assert masked.region_mask and masked.relevance_task and masked.loss_balancing == "uncertainty"


def test_a_ranker_field_changes_the_named_architectures_config():
    config = train_config(architecture="mlp_mtl", encoder_prior=False, dropout=0.1)
    assert config.ranker == architecture("mlp_mtl").replace(
        fine_tune_layers=0, encoder_prior=False, dropout=0.1
    )
    assert settings_of(train_config())["fine_tune_layers"] == 0


def test_xgboost_has_no_ranker_and_refuses_a_networks_settings():
    xgboost = train_config(architecture="xgboost", fine_tune_layers="all", targets="any")
    assert xgboost.ranker is None and xgboost.targets == "any"
    assert "projection_dim" not in settings_of(xgboost)
    assert changed_settings(xgboost) == {
        "architecture": ("mlpr", "xgboost"),
        "targets": ("rate", "any"),
    }
    with pytest.raises(ValueError, match="loss_balancing and region_mask change a neural network"):
        train_config(architecture="xgboost", loss_balancing="dwa", region_mask=True)
    with pytest.raises(ValueError, match="position_buckets change a neural network"):
        train_config(architecture="xgboost", position_buckets=20)


def test_an_unknown_name_is_refused_with_the_closest_known_one():
    with pytest.raises(ValueError, match=r"unknown train setting\(s\) \['max_epoch'\] \(did you "
                       r"mean 'max_epochs' for 'max_epoch'\?\); give a train step parameter"):  # fmt: skip
        train_config(max_epoch=2)
    with pytest.raises(ValueError, match="name the RankerConfig fields to change"):
        train_config(ranker=architecture("mlpr"))
    with pytest.raises(ValueError, match="unknown architecture 'bert'; choose one of .*'xgboost'"):
        train_config(architecture="bert")
    with pytest.raises(ValueError, match="fine_tune_layers must be 'all' or a whole number"):
        train_config(fine_tune_layers="some")


def test_no_name_is_both_a_trainconfig_and_a_rankerconfig_field():
    # train_config sends each name to one of them.
    assert not TRAIN_FIELDS & RANKER_FIELDS
    assert set(STEP_DEFAULTS) <= TRAIN_FIELDS | RANKER_FIELDS
