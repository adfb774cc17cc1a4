"""The ingest step's input, resolved once for the step and for the local run's preflight."""

import pytest

from components.ingest.errors import IngestError
from components.ingest.resolve import resolve_input
from contract import schema as S


def test_preflight_checks_without_writing(tmp_path):
    assert resolve_input("") is None  # the demo shop: nothing to check
    with pytest.raises(ValueError, match="homedepot adapter: input file '/no/such.zip' does not"):
        resolve_input("homedepot:/no/such.zip")
    with pytest.raises(IngestError, match="no file matches the input pattern"):
        resolve_input(str(tmp_path / "*.csv"))
    bad = tmp_path / "log.csv"
    bad.write_text("query,product_id\nshoes,p1\n")
    with pytest.raises(IngestError, match="is missing required column"):
        resolve_input(str(bad))
    assert list(tmp_path.iterdir()) == [bad]


def test_the_step_prepares_the_demo_shop(tmp_path):
    given = resolve_input("", work_dir=str(tmp_path), demo_queries=5, seed=1)
    assert given.pattern.endswith("demo.csv") and (tmp_path / "demo_input" / "demo.csv").exists()
    assert given.schema == S.DEMO_SCHEMA and (given.input_format, given.encoding) == (
        "csv",
        "utf-8",
    )
