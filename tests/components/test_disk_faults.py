"""Disk faults (components/disk_faults.py): a step whose volume fills up or goes read-only
ends with one line that names the path and the reason, leaves nothing half-written, and a
retry once the volume is writable again gives what a run that never failed gives.

The ingest and push steps run against a real tmpfs (tests/components/disk_testlib.py), filled
at a chosen moment of the step; the train step's runs are in test_train_disk_faults.py."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil

import pytest
from disk_testlib import files, mounted

from components import disk_faults
from components.ingest import job, statistics_files
from components.ingest import step as ingest_step_module
from components.push.publish import PushOutputs, push_step
from contract import layout
from contract import schema as S
from serving import tfs_config

FULL = "no space left on device"
FREE = "free space on that volume and retry the run; nothing of this step was published"
READ_ONLY = (
    "read-only file system while writing {path}: mount that volume read-write and retry the run; "
    "nothing of this step was published"
)


def _error_line(run, *args) -> str:
    """The line the step `run(*args)` ends with. Its exception is let go here: the failed
    write's frames hold files open on the volume, which would then stay mounted."""
    try:
        run(*args)
    except SystemExit as exited:
        return str(exited)
    pytest.fail("the step did not fail")


# How each library reports a full or read-only volume (`find`).


def test_an_oserror_names_its_errno_and_path():
    fault = disk_faults.find(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/v/out/a.json"))
    assert fault == disk_faults.DiskFault(errno.ENOSPC, "/v/out/a.json")
    # A copy or a rename names the file written second.
    copied = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/in/x", None, "/v/out/x")
    assert disk_faults.find(copied).path == "/v/out/x"
    assert disk_faults.find(OSError(errno.EROFS, "Read-only file system")).path is None


def test_beam_wraps_the_oserror_and_names_the_stage():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as err:
            raise RuntimeError(
                f"OSError: {err} [while running 'WriteSplits/Write[eval]/Write/WriteImpl/"
                "WriteBundles']"
            ) from None  # Beam's re-raise keeps the OSError as the context only
    except RuntimeError as wrapped:
        assert wrapped.__context__ is not None
        fault = disk_faults.find(wrapped, stages=job.write_stages("/v/out"))
    assert fault == disk_faults.DiskFault(
        errno.ENOSPC, "/v/out/eval", "WriteSplits/Write[eval]/Write/WriteImpl/WriteBundles"
    )


def test_a_remote_workers_error_is_read_from_its_text():
    text = (
        "Error processing instruction: Traceback ...\nOSError: [Errno 122] Disk quota exceeded "
        "[while running 'WriteDeadLetter/Write/WriteImpl/WriteBundles']"
    )
    fault = disk_faults.find(RuntimeError(text), stages=job.write_stages("/v/out"))
    assert (fault.errno, fault.path) == (errno.EDQUOT, "/v/out/dead_letter")


@pytest.mark.parametrize(
    ("text", "code", "path"),
    [
        # TensorFlow's ResourceExhaustedError of a SavedModel's variables.
        (
            "{{function_node __wrapped__SaveV2_dtypes_2_device_/job:localhost/replica:0/task:0/"
            "device:CPU:0}} /v/m/saved_model/variables/variables_temp/part-00000-of-00001.data-"
            "00000-of-00001.tempstate1804; No space left on device [Op:SaveV2]",
            errno.ENOSPC,
            "/v/m/saved_model/variables/variables_temp/part-00000-of-00001.data-00000-of-00001"
            ".tempstate1804",
        ),
        (
            "/v/m/saved_model/saved_model.pb; Read-only file system",
            errno.EROFS,
            "/v/m/saved_model/saved_model.pb",
        ),
        # h5py's OSError with HDF5's text.
        (
            "[Errno 28] Can't synchronously write data (file write failed: time = Sun Dec  6 "
            "10:16:31 2026\n, filename = '/v/m/checkpoints/best.weights.h5', file descriptor = 3, "
            "errno = 28, error message = 'No space left on device', buf = 0x7f6b, total write "
            "size = 4771904, bytes this sub-write = 4771904, offset = 2035712)",
            errno.ENOSPC,
            "/v/m/checkpoints/best.weights.h5",
        ),
    ],
)
def test_tensorflow_and_hdf5_texts(text, code, path):
    fault = disk_faults.find(RuntimeError(text))
    assert (fault.errno, fault.path) == (code, path)


def test_copytree_errors_name_the_file_written():
    why = "[Errno 28] No space left on device: '/m/saved_model/v.data' -> '/v/mlpr/.tmp-1/v.data'"
    err = shutil.Error([("/m/saved_model/v.data", "/v/mlpr/.tmp-1/v.data", why)])
    assert disk_faults.find(err) == disk_faults.DiskFault(errno.ENOSPC, "/v/mlpr/.tmp-1/v.data")


def test_what_is_no_disk_fault():
    assert disk_faults.find(OSError(errno.EIO, "Input/output error", "/v/x")) is None
    assert disk_faults.find(FileNotFoundError(errno.ENOENT, "No such file", "/v/x")) is None
    assert disk_faults.find(ValueError("price must be a number, got 'n/a'")) is None
    # Not allowed to read an input: no write fault of the step's.
    denied = PermissionError(errno.EACCES, "Permission denied", "/data/log.csv")
    assert disk_faults.find(denied, outputs=["/v/out"]) is None
    assert disk_faults.find(denied, outputs=["/data"]).errno == errno.EACCES
    # A full volume is one whatever the path.
    full = OSError(errno.ENOSPC, "No space left on device", "/tmp/scratch")
    assert disk_faults.find(full, outputs=["/v/out"]).path == "/tmp/scratch"


def test_writing_names_the_file_of_an_error_without_one(tmp_path):
    with pytest.raises(OSError) as raised, disk_faults.writing(str(tmp_path / "a.json")):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert raised.value.filename == str(tmp_path / "a.json")
    assert str(raised.value) == f"[Errno 28] No space left on device: '{tmp_path / 'a.json'}'"


def test_reported_ends_the_step_with_one_line_after_clearing(tmp_path):
    cleared = []
    with (
        pytest.raises(SystemExit) as exited,
        disk_faults.reported("ingest", [str(tmp_path)], lambda: cleared.append(1) or []),
    ):
        raise OSError(errno.EACCES, "Permission denied", str(tmp_path / "counts.json"))
    assert str(exited.value) == (
        f"ingest: error: permission denied while writing {tmp_path / 'counts.json'}: give the "
        "step's user write access there and retry the run; nothing of this step was published"
    )
    assert cleared == [1]
    left = [str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c")]
    with pytest.raises(SystemExit) as exited, disk_faults.reported("t", ["/o"], lambda: left):
        raise OSError(errno.EROFS, "Read-only file system")
    assert str(exited.value) == (
        "t: error: read-only file system while writing /o: mount that volume read-write and "
        f"retry the run; could not remove {left[0]} and 2 more either, which a retry "
        "replaces"
    )
    # Any other error goes on as it was.
    with pytest.raises(ValueError, match="bad"), disk_faults.reported("t", ["/o"]):
        raise ValueError("bad")


# The ingest step.

INGEST = dict(
    input_data="",
    input_format="auto",
    input_encoding="utf-8",
    schema_uri="",
    demo_queries=30,
    seed=4,
    funnel_policy="reject",
    max_bad_share=0.1,
    beam_pipeline_args=[],
)


def _ingest(output_dir, view) -> dict:
    metadata: dict = {}
    ingest_step_module.ingest_step(str(output_dir), metadata, html_view=str(view), **INGEST)
    return metadata


def _ingested(output_dir) -> dict:
    """What a later step reads: the counts, the schema, and each split's files (the same
    input gives the same bytes)."""

    def examples(split: str) -> list[tuple[str, bytes]]:
        shards = sorted(output_dir.glob(f"{split}/data-*{layout.SPLIT_SUFFIX}"))
        return [(path.name, path.read_bytes()) for path in shards]

    return {
        "counts": (output_dir / layout.COUNTS_FILE).read_text(),
        "schema": (output_dir / layout.SCHEMA_FILE).read_text(),
        **{split: examples(split) for split in S.SPLITS},
    }


@pytest.fixture(scope="module")
def clean_ingest(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    metadata = _ingest(root / "examples", root / "statistics.html")
    return metadata, _ingested(root / "examples"), files(root / "examples")


@pytest.mark.parametrize("moment", ["the Beam job", "the statistics"])
def test_ingest_on_a_full_volume_publishes_nothing_and_its_retry_matches_a_clean_run(
    tmp_path, request, monkeypatch, clean_ingest, moment
):
    clean_metadata, clean_data, clean_files = clean_ingest
    with mounted(tmp_path / "volume", "8m", request) as volume:
        out, view = volume.path / "examples", volume.path / "statistics.html"
        if moment == "the Beam job":  # the demo log is written, then the volume fills up
            real = job.build_pipeline

            def filled(*args, **kwargs):
                real(*args, **kwargs)
                volume.fill()

            monkeypatch.setattr(job, "build_pipeline", filled)
        else:  # the splits, counts.json and schema.json are written, then it fills up
            real = statistics_files.write_statistics

            def filled(*args, **kwargs):
                volume.fill()
                return real(*args, **kwargs)

            monkeypatch.setattr(statistics_files, "write_statistics", filled)
        line = _error_line(_ingest, out, view)
        if moment == "the Beam job":
            path = re.fullmatch(f"ingest: error: {FULL} while writing (.+): {FREE}", line)[1]
            assert path in job.write_stages(str(out)).values()
        else:
            assert line == f"ingest: error: {FULL} while writing {out / 'statistics.json'}: {FREE}"
        # Nothing is left for a retry or the transform step to take for complete: no shard,
        # no counts, no Beam temporary folder, no statistics page.
        assert files(volume.path) == [".filler"]
        monkeypatch.undo()
        volume.free()
        metadata = _ingest(out, view)
        assert metadata == clean_metadata
        assert _ingested(out) == clean_data
        assert files(out) == clean_files


def test_ingest_on_a_read_only_volume_and_its_retry(tmp_path, request, clean_ingest):
    clean_metadata, clean_data, _ = clean_ingest
    with mounted(tmp_path / "volume", "8m", request) as volume:
        out, view = volume.path / "examples", volume.path / "statistics.html"
        out.mkdir()  # kfp makes the artifact's folder
        volume.read_only()
        line = _error_line(_ingest, out, view)
        path = out / "demo_input"  # the first thing the step writes: the demo shop's log
        assert line == "ingest: error: " + READ_ONLY.format(path=path)
        volume.read_write()
        assert files(volume.path) == []
        assert _ingest(out, view) == clean_metadata
        assert _ingested(out) == clean_data


# The push step.

BLESSED = {"blessed": True, "reasons": ["blessed: all 9 checks passed"]}


@pytest.fixture
def candidate(tmp_path):
    """A model artifact whose saved_model/ is laid out as a SavedModel of 640 KB, and the
    evaluate step's blessing."""
    model = tmp_path / "candidate"
    saved = model / layout.SAVED_MODEL_DIR
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"graph" * 1000)
    (saved / "variables" / "variables.index").write_bytes(b"index")
    (saved / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(640 << 10))
    blessing = tmp_path / "blessing"
    blessing.mkdir()
    (blessing / layout.BLESSING_FILE).write_text(json.dumps(BLESSED))
    return str(model), str(blessing)


def _push(candidate, base, config_dir) -> PushOutputs:
    return push_step(*candidate, str(config_dir), str(base), "mlpr", "/models", "cpu")


def _versions(base) -> list[str]:
    return sorted(os.listdir(os.path.join(base, "mlpr")))


def _same_model(version_dir, candidate) -> bool:
    source = os.path.join(candidate[0], layout.SAVED_MODEL_DIR)
    return files(version_dir) == files(source) and all(
        open(os.path.join(version_dir, f), "rb").read()
        == open(os.path.join(source, f), "rb").read()
        for f in files(source)
    )


def test_push_onto_a_full_serving_volume_publishes_no_version(tmp_path, request, candidate):
    with mounted(tmp_path / "volume", "256k", request) as volume:
        base, config = volume.path / "serving", tmp_path / "serving_config"
        line = _error_line(_push, candidate, base, config)
        staged = re.escape(str(base / "mlpr" / ".tmp-"))
        data = re.escape("/variables/variables.data-00000-of-00001")
        assert re.fullmatch(
            f"push: error: {FULL} while writing {staged}[0-9a-f]+{data}: {FREE}", line
        )
        # No version folder, and no staging copy left: TF Serving sees nothing new.
        assert _versions(base) == [] and files(config) == []
        volume.resize("4m")
        pushed = _push(candidate, base, config)
        assert pushed.pushed and pushed.pushed_uri == str(base / "mlpr" / "1")
        assert _versions(base) == ["1"] and _same_model(pushed.pushed_uri, candidate)
        assert files(config) == sorted(os.listdir(base / tfs_config.CONFIG_DIR))


def test_push_with_a_full_pipeline_root_publishes_no_version(tmp_path, request, candidate):
    # The serving repository has room; the step's own artifact (its config files) does not.
    base = tmp_path / "serving"
    with mounted(tmp_path / "volume", "64k", request) as volume:
        config = volume.path / "serving_config"
        volume.fill()
        line = _error_line(_push, candidate, base, config)
        assert (
            line
            == f"push: error: {FULL} while writing {config / tfs_config.BATCHING_CONFIG}: {FREE}"
        )
        assert _versions(base) == [] and files(config) == []
        volume.free()
        pushed = _push(candidate, base, config)
        assert _versions(base) == ["1"] and _same_model(pushed.pushed_uri, candidate)
        assert files(config) == sorted(os.listdir(base / tfs_config.CONFIG_DIR))


def test_push_onto_a_read_only_serving_volume_and_its_retry(tmp_path, request, candidate):
    with mounted(tmp_path / "volume", "4m", request) as volume:
        base, config = volume.path / "serving", tmp_path / "serving_config"
        assert _push(candidate, base, config).pushed  # version 1, served already
        volume.read_only()
        line = _error_line(_push, candidate, base, tmp_path / "retry_config")
        staged = re.escape(str(base / "mlpr" / ".tmp-"))
        read_only = re.escape(READ_ONLY.format(path="PATH")).replace("PATH", f"{staged}[0-9a-f]+")
        assert re.fullmatch(f"push: error: {read_only}", line)
        volume.read_write()
        assert _versions(base) == ["1"]
        pushed = _push(candidate, base, tmp_path / "retry_config")
        assert pushed.pushed_uri == str(base / "mlpr" / "2")  # exactly one new version
        assert _versions(base) == ["1", "2"] and _same_model(pushed.pushed_uri, candidate)
