"""The demo shop's ingest output is pinned: splits, counts and dead letters must stay what they
were before ingest moved to Arrow record batches (`golden_demo_ingest.json`, written by the
row-at-a-time job of commit 83382c0 with `python tests/components/ingest/test_ingest_golden.py
--write`).

Compared:
- each split's examples as parsed records (`contract.features.raw_feature_spec`), sorted: a
  tf.Example's bytes are not comparable across writers (protobuf's map order, and a missing
  optional feature may be absent or an empty feature, which parse alike);
- `counts.json`, byte for byte;
- every dead letter (file name, row, reason, field, message, raw), byte for byte as JSON.

The input is the demo shop's log (CSV, as `./dev demo` writes it) and the bad-row catalogue's
CSV beside it, with a repeated pair and a quote left open, so every kind of outcome is there.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from ingest_testlib import read_all_splits, write_bad_csv  # noqa: E402

from components.ingest import demo_data  # noqa: E402
from contract import layout  # noqa: E402
from contract import schema as S  # noqa: E402

GOLDEN = Path(__file__).with_name("golden_demo_ingest.json")
QUERIES, SEED = 200, 11


def write_inputs(folder: Path) -> Path:
    """The demo log split over two CSV files, the bad-row catalogue, and a third file with a
    repeated pair and an unclosed quote."""
    folder.mkdir(parents=True, exist_ok=True)
    log = demo_data.generate(QUERIES, seed=SEED)
    half = len(log) // 2
    demo_data.write(log.iloc[:half], folder / "a-demo.csv")
    demo_data.write(log.iloc[half:], folder / "b-demo.csv")
    write_bad_csv(folder / "c-bad.csv")
    again = demo_data.write(log.iloc[:3], folder / "d-again.csv")  # three pairs come twice
    lines = again.read_text(encoding="utf-8").splitlines()
    lines.insert(2, 'unclosed query,"P999999,a title whose quote is never closed')
    again.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def fingerprint(output_dir: Path) -> dict:
    from components.ingest.job import read_dead_letters

    def digest(value) -> str:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    splits = read_all_splits(output_dir)
    dead = [
        {**d, "source": os.path.basename(d["source"])} for d in read_dead_letters(str(output_dir))
    ]
    return {
        "splits": {
            name: {
                "rows": len(rows),
                "sha256": digest(sorted(json.dumps(r, sort_keys=True) for r in rows)),
            }
            for name, rows in splits.items()
        },
        "counts_json_sha256": hashlib.sha256(
            (output_dir / layout.COUNTS_FILE).read_bytes()
        ).hexdigest(),
        "dead_letters": len(dead),
        "dead_letter_reasons": sorted({d["reason"] for d in dead}),
        "dead_letters_sha256": digest(dead),
    }


def ingest(folder: Path, output_dir: Path) -> dict:
    from components.ingest.job import run_ingest

    run_ingest(str(write_inputs(folder) / "*.csv"), str(output_dir), S.DEMO_SCHEMA)
    return fingerprint(output_dir)


def test_demo_shop_ingest_is_unchanged(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    got = ingest(tmp_path / "inputs", tmp_path / "out")
    assert got["dead_letter_reasons"] == golden["dead_letter_reasons"]
    assert got == golden


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: test_ingest_golden.py --write")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        found = ingest(Path(tmp) / "inputs", Path(tmp) / "out")
    GOLDEN.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    print(json.dumps(found, indent=2))
