import pytest

from components.train.config import train_config


def test_train_config_from_parameters():
    config = train_config("mlpr", 0, {"position_buckets": 20}, encoder_preset="tiny", seed=3)
    assert config.ranker_config.fine_tune_layers == 0
    assert config.ranker_config.position_buckets == 20
    assert (config.encoder_preset, config.seed) == ("tiny", 3)
    # A change of the variant wins over the run's fine_tune_layers (e.g. "mlpr (tiny)").
    assert (
        train_config("mlpr", 0, {"fine_tune_layers": "all"}).ranker_config.fine_tune_layers == "all"
    )
    assert train_config("xgboost", 0).ranker is None
    with pytest.raises(ValueError, match="unknown architecture 'bert'"):
        train_config("bert")
