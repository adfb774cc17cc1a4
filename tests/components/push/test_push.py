import errno
import json
import logging
import os
import shutil

import pytest

from components.push import publish as push_module
from components.push.publish import PushOutputs, push_model, push_step
from contract import layout
from serving import tfs_config

BLESSED = {"blessed": True, "reasons": ["blessed: all 6 checks passed"]}


@pytest.fixture
def saved_model(tmp_path):
    """A directory laid out as a SavedModel; the pusher copies it byte for byte."""
    root = tmp_path / "candidate" / "saved_model"
    (root / "variables").mkdir(parents=True)
    (root / "assets").mkdir()
    (root / "saved_model.pb").write_bytes(b"graph")
    (root / "variables" / "variables.index").write_bytes(b"index")
    (root / "variables" / "variables.data-00000-of-00001").write_bytes(b"weights" * 100)
    (root / "assets" / "vocab.txt").write_text("a\nb\n")
    return str(root)


def entries(model_base, model_name="mlpr") -> list[str]:
    return sorted(os.listdir(os.path.join(model_base, model_name)))


def test_first_push_is_version_1_and_copies_everything(tmp_path, saved_model):
    base = str(tmp_path / "serving")
    result = push_model(saved_model, base, "mlpr", BLESSED)
    assert result.pushed and result.version == 1
    assert result.uri == os.path.join(base, "mlpr", "1")
    assert "as version 1" in result.reason
    with open(os.path.join(result.uri, "variables", "variables.data-00000-of-00001"), "rb") as f:
        assert f.read() == b"weights" * 100
    assert entries(base) == ["1"]  # no staging directory left behind


def test_second_push_is_version_2(tmp_path, saved_model):
    base = str(tmp_path / "serving")
    push_model(saved_model, base, "mlpr", BLESSED)
    result = push_model(saved_model, base, "mlpr", BLESSED)
    assert (result.pushed, result.version) == (True, 2)
    assert entries(base) == ["1", "2"]


def test_unblessed_is_refused_and_nothing_is_written(tmp_path, saved_model):
    base = tmp_path / "serving"
    blessing = {"blessed": False, "reasons": ["not blessed: 1 of 6 checks failed", "x < y"]}
    result = push_model(saved_model, str(base), "mlpr", blessing)
    assert (result.pushed, result.version, result.uri) == (False, None, None)
    assert "not blessed" in result.reason and "x < y" in result.reason
    assert not base.exists()


@pytest.mark.parametrize("blessing", [{}, {"blessed": "true"}, {"blessed": 1}, None])
def test_anything_but_true_is_refused(tmp_path, saved_model, blessing):
    result = push_model(saved_model, str(tmp_path / "serving"), "mlpr", blessing)
    assert not result.pushed
    assert result.reason.startswith("refused")


def test_junk_and_non_numeric_entries_are_ignored(tmp_path, saved_model):
    root = tmp_path / "serving" / "mlpr"
    for name in ("latest", ".tmp-old", "v7", "0", "-3"):
        (root / name).mkdir(parents=True)
    (root / "README").write_text("models")
    result = push_model(saved_model, str(tmp_path / "serving"), "mlpr", BLESSED)
    assert result.version == 1
    (root / "4").mkdir()  # a numeric version without a model still takes its number
    assert push_model(saved_model, str(tmp_path / "serving"), "mlpr", BLESSED).version == 5


def test_interrupted_copy_leaves_nothing_behind(tmp_path, saved_model, monkeypatch):
    real_copytree = shutil.copytree
    copied = []

    def copy_one(src, dst):
        # The first file lands, then the disk fails.
        if copied:
            raise OSError(errno.EIO, "disk went away", src)
        copied.append(src)
        return shutil.copy2(src, dst)

    def copy_then_fail(src, dst, *args, **kwargs):
        if args:  # copytree's recursion into a subdirectory passes copy_one along
            return real_copytree(src, dst, *args, **kwargs)
        return real_copytree(src, dst, copy_function=copy_one, **kwargs)

    monkeypatch.setattr(shutil, "copytree", copy_then_fail)
    base = tmp_path / "serving"
    with pytest.raises(OSError, match="disk went away") as info:
        push_model(saved_model, str(base), "mlpr", BLESSED)
    assert copied, "the copy should have started before failing"
    assert any("staging directory" in note for note in info.value.__notes__)
    assert entries(str(base)) == []


def test_version_taken_concurrently_moves_to_the_next(tmp_path, saved_model, monkeypatch):
    real_rename = os.rename
    base = tmp_path / "serving"

    def another_pusher_wins(src, dst):
        # Another pusher renames its complete copy into version 1 just before we do.
        if os.path.basename(dst) == "1" and not os.path.exists(dst):
            os.makedirs(os.path.join(dst, "variables"))
            with open(os.path.join(dst, "saved_model.pb"), "wb") as f:
                f.write(b"theirs")
        return real_rename(src, dst)

    monkeypatch.setattr(push_module.os, "rename", another_pusher_wins)
    result = push_model(saved_model, str(base), "mlpr", BLESSED)
    assert (result.pushed, result.version) == (True, 2)
    assert (base / "mlpr" / "1" / "saved_model.pb").read_bytes() == b"theirs"
    assert (base / "mlpr" / "2" / "saved_model.pb").read_bytes() == b"graph"
    assert entries(str(base)) == ["1", "2"]


def test_source_must_be_a_saved_model(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.keras").write_bytes(b"")
    with pytest.raises(
        FileNotFoundError,
        match=r"not a SavedModel: no saved_model.pb \(it contains \['model.keras'\]\)",
    ):
        push_model(str(tmp_path / "model"), str(tmp_path / "serving"), "mlpr", BLESSED)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        push_model(str(tmp_path / "missing"), str(tmp_path / "serving"), "mlpr", BLESSED)


def test_object_store_uri_is_rejected(saved_model):
    with pytest.raises(ValueError, match="gs:// URI; object stores are not supported"):
        push_model(saved_model, "gs://bucket/models", "mlpr", BLESSED)


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", ".."])
def test_model_name_must_be_a_plain_directory_name(tmp_path, saved_model, name):
    with pytest.raises(ValueError, match="model_name must be a plain directory name"):
        push_model(saved_model, str(tmp_path), name, BLESSED)


def test_push_writes_the_tf_serving_configs_and_keeps_other_models(tmp_path, saved_model):
    base = tmp_path / "serving"
    result = push_model(saved_model, str(base), "mlpr", BLESSED, batching_profile="cpu")
    assert result.config_dir == str(base / tfs_config.CONFIG_DIR)
    files = sorted(os.listdir(result.config_dir))
    assert files == ["batching.config", "models.config", "monitoring.config"]
    models = tfs_config.parse((base / "tfserving/models.config").read_text(), "ModelServerConfig")
    (entry,) = models.model_config_list.config
    assert (entry.name, entry.base_path) == ("mlpr", "/models/mlpr")
    assert entry.model_version_policy.latest.num_versions == 1
    batching = tfs_config.parse(
        (base / "tfserving/batching.config").read_text(), "BatchingParameters"
    )
    assert batching.max_batch_size.value == 1024

    # A second model pushed into the same repository joins the first in models.config, with
    # the GPU batching profile and another mount point.
    push_model(saved_model, str(base), "ranker_b", BLESSED, serving_base="/srv/models")
    models = tfs_config.parse((base / "tfserving/models.config").read_text(), "ModelServerConfig")
    assert {c.name: c.base_path for c in models.model_config_list.config} == {
        "mlpr": "/models/mlpr",
        "ranker_b": "/srv/models/ranker_b",
    }
    batching = tfs_config.parse(
        (base / "tfserving/batching.config").read_text(), "BatchingParameters"
    )
    assert batching.max_batch_size.value == 4096
    # The version directories are untouched by the configs beside them.
    assert entries(str(base)) == ["1"] and entries(str(base), "ranker_b") == ["1"]


def test_refused_or_misconfigured_push_writes_no_configs(tmp_path, saved_model):
    base = tmp_path / "serving"
    assert push_model(saved_model, str(base), "mlpr", {"blessed": False}).config_dir is None
    with pytest.raises(ValueError, match="batching profile must be one of"):
        push_model(saved_model, str(base), "mlpr", BLESSED, batching_profile="tpu")
    with pytest.raises(ValueError, match="serving_base must be an absolute path"):
        push_model(saved_model, str(base), "mlpr", BLESSED, serving_base="models")
    assert not (base / tfs_config.CONFIG_DIR).exists()
    assert not (base / "mlpr").exists() or entries(str(base)) == []


def _blessing_dir(path, blessing: dict) -> str:
    os.makedirs(path)
    with open(os.path.join(path, layout.BLESSING_FILE), "w", encoding="utf-8") as f:
        json.dump(blessing, f)
    return str(path)


def test_push_step_reads_the_blessing_and_keeps_the_configs(tmp_path, saved_model, caplog, capsys):
    model_dir = os.path.dirname(saved_model)  # the model artifact: its SavedModel in saved_model/
    base = tmp_path / "serving"
    caplog.set_level(logging.INFO, logger="mlpr.progress")
    refused = push_step(
        model_dir,
        _blessing_dir(tmp_path / "no", {"blessed": False, "reasons": ["x < y"]}),
        str(tmp_path / "config_refused"),
        str(base),
        "mlpr",
        "/models",
        "gpu",
    )
    assert refused == PushOutputs(False, "", refused.reason)
    assert "x < y" in refused.reason
    assert caplog.messages == [f"progress: skipped: {refused.reason}"]  # the step's log says why
    assert os.listdir(tmp_path / "config_refused") == [] and not base.exists()

    # A hidden file beside the configs (an editor's or a copier's) is not part of the artifact.
    (base / tfs_config.CONFIG_DIR).mkdir(parents=True)
    (base / tfs_config.CONFIG_DIR / ".models.config.swp").write_text("x")
    pushed = push_step(
        model_dir,
        _blessing_dir(tmp_path / "yes", BLESSED),
        str(tmp_path / "config"),
        str(base),
        "ranker",
        "/srv",
        "cpu",
    )
    assert pushed == PushOutputs(True, str(base / "ranker" / "1"), pushed.reason)
    assert "as version 1 of 'ranker'" in pushed.reason
    assert f"TF Serving config: {base / tfs_config.CONFIG_DIR}" in capsys.readouterr().out
    copied = sorted(os.listdir(tmp_path / "config"))
    assert copied == ["batching.config", "models.config", "monitoring.config"]
    models = (tmp_path / "config" / "models.config").read_text()
    assert 'base_path: "/srv/ranker"' in models
    batching = (tmp_path / "config" / "batching.config").read_text()
    assert tfs_config.parse(batching, "BatchingParameters").max_batch_size.value == 1024  # cpu
