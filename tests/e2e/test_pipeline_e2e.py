"""The whole DAG through kfp.local, started the way a user starts it (pipeline.py run)."""

import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_pipeline(tmp_path, *args):
    cmd = [
        sys.executable,
        os.path.join(ROOT, "pipeline.py"),
        "run",
        "--demo-queries", "200",
        "--max-epochs", "3",
        "--model-base", str(tmp_path / "serving"),
        "--pipeline-root", str(tmp_path / "root"),
        *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    first = run_pipeline(tmp, "--auc-floor", "0.55")
    second = run_pipeline(tmp, "--auc-floor", "0.99")
    return tmp, first, second


def _artifacts(tmp, name: str) -> list[dict]:
    """Every `name` file the runs wrote under their pipeline root, oldest first."""
    import json

    found = sorted((tmp / "root").rglob(name), key=lambda p: p.stat().st_mtime)
    return [json.loads(p.read_text()) for p in found]


def test_the_runs_artifacts_say_what_happened(two_runs):
    tmp, (code, _, err), (code2, _, err2) = two_runs
    assert code == 0 and code2 == 0, (err + err2)[-3000:]
    first, second = _artifacts(tmp, "blessing.json")
    assert (first["blessed"], first["first_run"]) == (True, True)
    assert second["blessed"] is False and second["first_run"] is False
    failed = [c for c in second["checks"] if c["outcome"] == "fail"]
    assert any(c["metric"] == "click/auc" and c["threshold"] == 0.99 for c in failed)
    for counts in _artifacts(tmp, "counts.json"):
        dead = counts["rows_dead_letter"]
        assert (
            counts["rows_read"]
            == counts["rows_kept"] + counts["rows_filtered_low_impressions"] + dead
        )
        assert counts["rows_kept"] > 0


def test_first_run_is_blessed_and_pushed(two_runs):
    tmp, (code, out, err), _ = two_runs
    assert code == 0, err[-3000:]
    assert "Blessed: yes" in out
    assert "no champion in" in out
    pushed = os.path.join(tmp / "serving", "mlpr", "1")
    assert f"Pushed: {pushed}" in out
    assert os.path.exists(os.path.join(pushed, "saved_model.pb"))
    # Per-split statistics are written, and the demo's splits do not drift from train.
    assert "drift against train: 0 finding(s)" in out
    # The push wrote TF Serving's models.config for a server that sees this repository.
    models = (tmp / "serving" / "tfserving" / "models.config").read_text()
    assert f'base_path: "{tmp / "serving" / "mlpr"}"' in models
    # Counts in the summary add up: read = kept + filtered + dead-lettered.
    line = next(x for x in out.splitlines() if x.strip().startswith("rows read"))
    nums = [
        int(t.rstrip(","))
        for t in line.replace("(<= 5 impressions)", "").split()
        if t.rstrip(",").isdigit()
    ]
    read, kept, filtered, dead = nums
    assert read == kept + filtered + dead and kept > 0 and filtered > 0


def test_pushed_model_scores_raw_requests(two_runs):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the TF Text ops of the serving graph)

    tmp, _, _ = two_runs
    model = tf.saved_model.load(os.path.join(tmp / "serving", "mlpr", "1"))
    serve = model.signatures["serving_default"]
    names = serve.structured_input_signature[1]
    request = {}
    for name, spec in names.items():
        if spec.dtype == tf.string:
            request[name] = (
                tf.constant(["women's running shoes", "oak desk lamp"])
                if name == "title"
                else tf.constant(["trainers for women", "trainers for women"])
                if name == "query"
                else tf.constant(["", ""])
            )
        else:
            request[name] = tf.constant([0.5, 0.1], tf.float32)
    out = serve(**request)
    for key in ("click", "atc", "purchase", "score"):
        values = out[key].numpy()
        assert values.shape == (2,) and np.all(np.isfinite(values))
    assert np.all(out["click"].numpy() >= out["atc"].numpy())
    assert np.all(out["atc"].numpy() >= out["purchase"].numpy())


def test_stricter_floor_refuses_and_says_why(two_runs):
    tmp, _, (code, out, err) = two_runs
    assert code == 0, err[-3000:]
    assert "Blessed: NO" in out
    assert "click/auc = " in out and "< floor 0.9900" in out
    assert "compared with champion" in out
    assert "Pushed: nothing" in out
    assert sorted(os.listdir(tmp / "serving" / "mlpr")) == ["1"]


def test_bad_input_fails_with_a_clear_error(tmp_path):
    bad = tmp_path / "logs.csv"
    bad.write_text("query,product_id,title,impressions,clicks\nshoes,p1,Shoe,10,1\n")
    code, out, err = run_pipeline(tmp_path, "--input-data", str(bad))
    assert code != 0
    assert "is missing required column(s)" in err
    assert "add_to_cart" in err and "purchases" in err
    assert "Traceback" not in err
