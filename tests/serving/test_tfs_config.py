"""The TF Serving config files: what k8s/ ships is what the module generates, and each file
parses as the message the model server reads."""

import pytest

from serving import server, tfs_config


def test_k8s_config_files_are_the_generated_defaults():
    for path, text in tfs_config.k8s_files(".").items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} differs from serving/tfs_config.py; run `python -m serving.tfs_config k8s`"
        )


def test_batching_profiles_parse_and_bound_a_request():
    cpu = tfs_config.parse(tfs_config.batching_text("cpu"), "BatchingParameters")
    gpu = tfs_config.parse(tfs_config.batching_text("gpu"), "BatchingParameters")
    assert (cpu.max_batch_size.value, cpu.batch_timeout_micros.value) == (1024, 1000)
    assert (gpu.max_batch_size.value, gpu.batch_timeout_micros.value) == (4096, 2000)
    # The local server refuses what one TF Serving CPU batch could not hold.
    assert cpu.max_batch_size.value == server.DEFAULT_MAX_CANDIDATES
    with pytest.raises(ValueError, match="unknown field|no field named|has no field"):
        tfs_config.parse("max_batch_sizes { value: 3 }", "BatchingParameters")


def test_monitoring_enables_prometheus_at_the_path():
    monitoring = tfs_config.parse(tfs_config.monitoring_text("/metrics"), "MonitoringConfig")
    assert monitoring.prometheus_config.enable is True
    assert monitoring.prometheus_config.path == "/metrics"
    with pytest.raises(ValueError, match="must start with '/'"):
        tfs_config.monitoring_text("metrics")


def test_models_config_merges_by_name_and_version_policies():
    first = tfs_config.models_config_text([tfs_config.model_config("b", "/models")])
    pinned = tfs_config.model_config("a", "/models", "specific", versions=(3, 2, 3))
    merged = tfs_config.parse(tfs_config.merge_models_config(first, pinned), "ModelServerConfig")
    assert [c.name for c in merged.model_config_list.config] == ["a", "b"]
    assert list(merged.model_config_list.config[0].model_version_policy.specific.versions) == [2, 3]
    # Pushing "b" again replaces its entry (now keeping two versions), "a" stays.
    again = tfs_config.model_config("b", "gs://bucket/models", num_versions=2)
    merged = tfs_config.parse(
        tfs_config.merge_models_config(
            tfs_config.models_config_text(list(merged.model_config_list.config)), again
        ),
        "ModelServerConfig",
    )
    by_name = {c.name: c for c in merged.model_config_list.config}
    assert by_name["b"].base_path == "gs://bucket/models/b"
    assert by_name["b"].model_version_policy.latest.num_versions == 2
    assert by_name["a"].model_version_policy.WhichOneof("policy_choice") == "specific"
    all_versions = tfs_config.model_config("c", version_policy="all")
    assert all_versions.model_version_policy.WhichOneof("policy_choice") == "all"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"version_policy": "newest"}, "version_policy must be one of"),
        ({"num_versions": 0}, "num_versions must be at least 1"),
        ({"version_policy": "specific"}, "needs positive versions"),
        ({"model_name": "a/b"}, "plain name"),
    ],
)
def test_bad_model_config_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfs_config.model_config(**kwargs)


def test_a_broken_models_config_is_reported_not_overwritten(tmp_path):
    (tmp_path / "models.config").write_text("model_config_list { config { nam: 'x' } }")
    with pytest.raises(ValueError, match="not a valid TF Serving ModelServerConfig"):
        tfs_config.write_serving_configs(tmp_path)
    assert "nam: 'x'" in (tmp_path / "models.config").read_text()
