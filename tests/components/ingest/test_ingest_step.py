"""The ingest step as the component calls it: the demo shop into an output directory, its
counts into the artifact's metadata; unusable input stops the step with the reason."""

from __future__ import annotations

import json

import pytest

from components.ingest import demo_data
from components.ingest.step import ingest_step
from contract import layout


def run_step(output_dir, metadata: dict, **given) -> None:
    parameters = dict(
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
    ingest_step(str(output_dir), metadata, **(parameters | given))


def test_demo_run_fills_the_output_and_the_metadata(tmp_path):
    metadata = {"kept": "from before"}
    run_step(tmp_path / "examples", metadata, html_view=str(tmp_path / "view" / "statistics"))
    log = demo_data.generate(30, seed=4)
    counts = json.loads((tmp_path / "examples" / layout.COUNTS_FILE).read_text())
    assert counts["rows_read"] == len(log) == metadata["rows_read"]
    assert metadata["rows_kept"] == counts["rows_kept"] > 0
    assert metadata["rows_dead_letter"] == 0
    # The per-split counts, flattened as "<split>_<count>"; no nested "splits" entry.
    assert "splits" not in metadata and metadata["kept"] == "from before"
    for split in ("train", "eval", "test"):
        assert metadata[f"{split}_rows"] == counts["splits"][split]["rows"]
        assert metadata[f"{split}_queries"] == counts["splits"][split]["queries"]
    assert sum(metadata[f"{s}_rows"] for s in ("train", "eval", "test")) == counts["rows_kept"]
    statistics = json.loads((tmp_path / "examples" / "statistics.json").read_text())
    assert metadata["drift_findings"] == len(statistics["drift"])
    # The component's HTML output: the statistics page, as written beside the examples.
    page = (tmp_path / "view" / "statistics").read_text()
    assert page == (tmp_path / "examples" / "statistics.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Ingest statistics" in page
    assert (tmp_path / "examples" / "demo_input" / "demo.csv").exists()
    for split in ("train", "eval", "test"):
        assert list((tmp_path / "examples" / split).glob(f"data-*{layout.SPLIT_SUFFIX}"))


@pytest.mark.parametrize(
    ("input_data", "reason"),
    [
        ("homedepot:/no/such.zip", "homedepot adapter: input file '/no/such.zip' does not exist"),
        ("/no/such/*.csv", "no file matches the input pattern /no/such/*.csv"),
    ],
)
def test_unusable_input_exits_with_the_reason(tmp_path, input_data, reason):
    metadata: dict = {}
    with pytest.raises(SystemExit) as exited:
        run_step(tmp_path / "examples", metadata, input_data=input_data)
    assert str(exited.value) == f"ingest: error: {reason}"
    assert metadata == {}
