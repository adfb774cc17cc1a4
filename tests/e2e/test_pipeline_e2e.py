"""The whole DAG through kfp.local, started the way a user starts it (`./dev demo`, that is
`python -m local.run_pipeline`): once on a terminal (a pseudo-terminal read through a
terminal emulator, as a person sees it), once through a pipe, and once on an input that makes
a step fail."""

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = ("ingest", "transform", "pretrain", "train", "evaluate", "push")
COLUMNS, ROWS = 400, 500
# Lines that the libraries print unless silenced (components/step_log.py).
NOISE = re.compile(
    r"Converting string literal type hint|Setting to DenseTensor|absl::InitializeLog|"
    r"Could not find cuda drivers|oneDNN custom operations|cuInit|cpu_feature_guard|"
    r"Renamed \d+ shards|Assets written to"
)


def _command(tmp_path, *args) -> list[str]:
    return [
        sys.executable, "-m", "local.run_pipeline",
        "--demo-queries", "200",
        "--max-epochs", "3",
        "--model-base", str(tmp_path / "serving"),
        "--pipeline-root", str(tmp_path / "root"),
        *args,
    ]  # fmt: skip


def _user_env() -> dict:
    """The environment of a user's shell: without the suite's own TensorFlow log level
    (tests/conftest.py), so the run sets its own, as it does for a user."""
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def run_piped(tmp_path, *args):
    done = subprocess.run(
        _command(tmp_path, *args),
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=_user_env(),
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def run_on_terminal(tmp_path, *args) -> tuple[int, list[str]]:
    """Run on a pseudo-terminal; returns the exit status and the screen's lines, as a
    terminal of COLUMNS x ROWS shows them at the end (redraws applied)."""
    import pyte

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = dict(_user_env(), TERM="xterm-256color", COLUMNS=str(COLUMNS), LINES=str(ROWS))
    process = subprocess.Popen(
        _command(tmp_path, *args), cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    screen = pyte.Screen(COLUMNS, ROWS)
    stream = pyte.ByteStream(screen)
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        stream.feed(data.replace(b"\n", b"\r\n"))
    os.close(master)
    code = process.wait(timeout=60)
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return code, lines


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    first = run_on_terminal(tmp, "--auc-floor", "0.55")
    second = run_piped(tmp, "--auc-floor", "0.99")
    return tmp, first, second


def _artifacts(tmp, name: str) -> list[dict]:
    """Every `name` file the runs wrote under their pipeline root, oldest first."""
    found = sorted((tmp / "root").rglob(name), key=lambda p: p.stat().st_mtime)
    return [json.loads(p.read_text()) for p in found]


def _run_dirs(tmp) -> list:
    return sorted((tmp / "root").glob("mlpr-ranking-*"), key=lambda p: p.stat().st_mtime)


def test_the_terminal_shows_one_line_per_step_then_the_summary(two_runs):
    tmp, (code, screen), _ = two_runs
    text = "\n".join(screen)
    assert code == 0, text[-3000:]
    end = next(i for i, line in enumerate(screen) if line.startswith("MLPR pipeline finished"))
    before = [line for line in screen[:end] if line.strip()]
    assert len(before) <= 60, "\n".join(before)
    states = {}
    for line in before:
        m = re.match(r"(\w+)\s+(waiting|running|done|cached|skipped|failed)\s+(\d+) s", line)
        if m:
            states[m.group(1)] = (m.group(2), int(m.group(3)))
    assert {s: st for s, (st, _) in states.items()} == {  # (the screen: "\n".join(before))
        "ingest": "done", "transform": "done", "pretrain": "skipped",
        "train": "done", "evaluate": "done", "push": "done",
    }  # fmt: skip
    assert states["train"][1] > 0
    (run_dir,) = _run_dirs(tmp)[:1]
    assert f"logs: {run_dir / 'logs'}/" in before
    # The run's full output is in the step logs, not on the screen.
    assert "Executing task" not in text and "executor_input" not in text
    assert not NOISE.search(text)


def test_each_step_has_its_full_log_without_library_noise(two_runs):
    tmp, _, _ = two_runs
    run_dir = _run_dirs(tmp)[0]
    logs = {p.stem: p.read_text() for p in (run_dir / "logs").glob("*.log")}
    assert set(STEPS) <= set(logs)
    assert "Executing task 'ingest'" in logs["ingest"]
    assert "progress: epoch 1/3" in logs["train"]
    assert "progress: scoring the test split with the candidate" in logs["evaluate"]
    assert "ingest counts: read" in logs["ingest"]
    noisy = {step: NOISE.findall(text)[:3] for step, text in logs.items() if NOISE.search(text)}
    assert noisy == {}
    assert "\x1b[" not in "".join(logs.values())  # plain text, no terminal colours


def test_the_runs_artifacts_say_what_happened(two_runs):
    tmp, (code, screen), (code2, _, err2) = two_runs
    assert code == 0 and code2 == 0, "\n".join(screen)[-3000:] + err2[-3000:]
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


def test_first_run_is_blessed_and_pushed_and_says_how_to_serve_it(two_runs):
    tmp, (code, screen), _ = two_runs
    out = "\n".join(screen)
    assert code == 0, out[-3000:]
    assert "Verdict: BLESSED" in out
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
    line = next(x for x in screen if x.strip().startswith("read ") and "rows: kept" in x)
    m = re.search(r"read (\d+) rows: kept (\d+), filtered \(impressions <= 5\) (\d+), "
                  r"dead-lettered (\d+)", line)  # fmt: skip
    read, kept, filtered, dead = (int(n) for n in m.groups())
    assert read == kept + filtered + dead and kept > 0 and filtered > 0
    # The report as a URL, and the commands to serve the model and query it, paths filled in.
    run_dir = _run_dirs(tmp)[0]
    assert f"Report: file://{run_dir}/report.html" in out
    assert (run_dir / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    serve = next(x.strip() for x in screen if "-m serving.server" in x)
    assert f"--model-base {tmp / 'serving'}" in serve and "--model-name mlpr" in serve
    query = next(x.strip() for x in screen if "-m serving.client" in x)
    products = run_dir / "example_products.jsonl"
    assert f"--products {products}" in query
    candidates = [json.loads(line) for line in products.read_text().splitlines()]
    assert 2 <= len(candidates) <= 10
    assert {"product_id", "title", "price"} <= set(candidates[0])


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


def test_through_a_pipe_each_event_is_a_line(two_runs):
    tmp, _, (code, out, err) = two_runs
    assert code == 0, err[-3000:]
    assert "\x1b[" not in out  # no redraws, no colours
    # The steps that cache reuse the first run's outputs (same inputs), as on Kubeflow;
    # evaluate runs again: the champion is now the first run's model.
    for step in ("ingest", "transform", "pretrain", "train"):
        assert re.search(rf"^{step}\s+cached: the outputs of an earlier run", out, re.M), step
    assert re.search(r"^evaluate\s+running$", out, re.M)
    assert re.search(r"^evaluate\s+scoring the test split with the champion", out, re.M)
    assert re.search(r"^evaluate\s+done in \d+ s$", out, re.M)
    assert re.search(r"^push\s+skipped\s+the model was not blessed", out, re.M)
    # the stricter gate refuses, and says why
    assert "Verdict: NOT BLESSED" in out
    assert "click/auc = " in out and "< floor 0.9900" in out
    assert "compared with champion" in out
    assert "Pushed: nothing" in out
    assert sorted(os.listdir(tmp / "serving" / "mlpr")) == ["1"]


def test_a_failing_step_shows_the_end_of_its_log(tmp_path):
    """Most rows break the funnel (more clicks than impressions): ingest runs and fails, and
    the screen shows why, with the log's path."""
    from components.ingest import demo_data

    path = tmp_path / "logs.csv"
    rows = demo_data.generate(30, seed=1)
    rows["clicks"] = rows["impressions"] + 1
    demo_data.write(rows, str(path))
    code, out, err = run_piped(tmp_path, "--input-data", str(path))
    assert code == 1
    assert re.search(r"^ingest\s+failed in \d+ s$", out, re.M)
    assert "error: step ingest failed. The last lines of its log:" in out
    assert "could not be used, more than max_bad_share 10.0%" in out
    (run_dir,) = _run_dirs(tmp_path)
    assert f"Full log: {run_dir / 'logs' / 'ingest.log'}" in out
    assert "Traceback" not in out + err
    assert "transform" not in out  # nothing ran after it


def test_bad_input_fails_with_a_clear_error_before_any_step(tmp_path):
    bad = tmp_path / "logs.csv"
    bad.write_text("query,product_id,title,impressions,clicks\nshoes,p1,Shoe,10,1\n")
    code, out, err = run_piped(tmp_path, "--input-data", str(bad))
    assert code == 2
    assert "is missing required column(s)" in err
    assert "add_to_cart" in err and "purchases" in err
    assert "Traceback" not in err
    assert not (tmp_path / "root").exists() or not _run_dirs(tmp_path)


def test_a_four_stage_funnel_runs_end_to_end(tmp_path):
    """The demo shop with a favorite stage (click -> favorite -> atc -> purchase), declared in
    its schema file: every step follows the four tasks, from the ingest's labels to the
    pushed model's outputs."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the TF Text ops of the serving graph)

    from components.ingest import demo_data

    tasks = ["click", "favorite", "atc", "purchase"]
    log = demo_data.write(demo_data.generate(150, seed=2, favorites=True), tmp_path / "log.csv")
    schema = tmp_path / "schema.json"
    schema.write_text(demo_data.demo_schema(favorites=True).to_json())
    code, out, err = run_piped(
        tmp_path, "--input-data", str(log), "--schema-uri", str(schema), "--auc-floor", "0.5"
    )
    assert code == 0, out[-3000:] + err[-3000:]
    (statistics,) = _artifacts(tmp_path, "statistics.json")
    rates = statistics["splits"]["train"]["label_rate"]
    assert list(rates) == tasks
    assert rates["click"] > rates["favorite"] > rates["atc"] > rates["purchase"] > 0
    (results,) = _artifacts(tmp_path, "eval_results.json")
    for task in tasks:
        assert 0.0 <= results["candidate"][f"{task}/ndcg@5"] <= 1.0
    for task in tasks:  # the summary's table has a row per task
        assert re.search(rf"^\W*{task}\W+ndcg@5\W+[01]\.\d{{4}}", out, re.M), task
    (run_dir,) = _run_dirs(tmp_path)
    assert "favorite" in (run_dir / "report.html").read_text()
    # The pushed model: one probability per task, chained along the funnel, and the score.
    model = tf.saved_model.load(os.path.join(tmp_path / "serving", "mlpr", "1"))
    products = [json.loads(line) for line in (run_dir / "example_products.jsonl").open()]
    rank = model.signatures["serving_default"]
    request = {}
    for name, spec in rank.structured_input_signature[1].items():
        if name == "query":
            request[name] = tf.constant(["trainers for women"])
        elif spec.dtype == tf.string:
            request[name] = tf.constant([str(p.get(name, "")) for p in products])
        else:
            request[name] = tf.constant([float(p.get(name, 0.0)) for p in products], tf.float32)
    scores = {k: v.numpy() for k, v in rank(**request).items()}
    assert sorted(scores) == sorted([*tasks, "score"])
    for upper, lower in zip(tasks, tasks[1:], strict=False):
        assert np.all(scores[upper] >= scores[lower])
    np.testing.assert_allclose(scores["score"], sum(scores[t] for t in tasks), rtol=1e-5)


def test_a_model_below_a_no_training_reference_is_refused(tmp_path):
    """A first run whose model learned nothing (the random `tiny` encoder, one epoch at a
    learning rate of 1e-9) clears floors of 0 but ranks far below the demo schema's relevance
    score lexical_score: the reference check refuses it, and says against what and how sure."""
    code, out, err = run_piped(
        tmp_path, "--encoder-preset", "tiny", "--max-epochs", "1", "--learning-rate", "1e-9",
        "--auc-floor", "0",
    )  # fmt: skip
    assert code == 0, out[-3000:] + err[-3000:]
    (blessing,) = _artifacts(tmp_path, "blessing.json")
    assert blessing["blessed"] is False and blessing["first_run"] is True
    failed = [c for c in blessing["checks"] if c["outcome"] == "fail"]
    assert failed and {c["check"] for c in failed} == {"reference"}  # not a floor
    for check in failed:
        task = check["metric"].split("/")[0]
        comparison = blessing["references"][task]
        assert check["value"] == comparison["p_less"] < 0.05
        assert f"significantly below reference {comparison['reference']} " in check["reason"]
        assert check["reason"] in out  # the summary's reasons
    assert re.search(
        r"purchase/ndcg@5 = 0\.\d{4} is significantly below reference \S+ 0\.\d{4} \(paired over "
        r"\d+ queries: -0\.\d{4}, one-sided p = [\d.e-]+\)",
        out,
    )
    # No zero-shot reference for a random-weight encoder, and the summary says so.
    assert "no zero-shot reference: the candidate's encoder 'tiny' starts from random" in out
    assert re.search(r"^push\s+skipped\s+the model was not blessed", out, re.M)


def _processes_mentioning(text: str) -> list[int]:
    """Processes whose command line holds `text` (a run's own paths)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if text.encode() in fh.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


def test_a_run_killed_mid_training_leaves_no_step_behind_and_resumes(tmp_path):
    """SIGKILL the runner while train is in its second epoch: no process of the run goes on.
    The same command again takes ingest, transform and pretrain from the cache and resumes
    training after the last epoch it backed up (checkpoint_root), then blesses and pushes."""
    import glob
    import signal
    import time

    checkpoints = tmp_path / "checkpoints"
    args = ("--max-epochs", "4", "--checkpoint-root", str(checkpoints), "--auc-floor", "0.5")
    runner = subprocess.Popen(
        _command(tmp_path, *args), cwd=ROOT, env=_user_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline, saved = time.monotonic() + 600, None
        while time.monotonic() < deadline and runner.poll() is None:
            states = glob.glob(str(checkpoints / "train-*" / "current" / "state.json"))
            if states:
                with open(states[0], encoding="utf-8") as fh:
                    saved = json.load(fh)["epoch"] + 1
                break
            time.sleep(0.2)
        assert saved is not None, "the train step wrote no backup"
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        time.sleep(3.0)  # the lifeline checks every second
        assert not _processes_mentioning(str(tmp_path / "root")), "a step outlived its runner"
    finally:
        if runner.poll() is None:
            runner.kill()
    code, out, err = run_piped(tmp_path, *args)
    assert code == 0, out[-3000:] + err[-3000:]
    for step in ("ingest", "transform", "pretrain"):
        assert re.search(rf"^{step}\s+cached", out, re.M), out[-3000:]
    (train_log,) = sorted((tmp_path / "root").glob("*/logs/train.log"))[-1:]
    assert f"resuming after epoch {saved} of 4" in train_log.read_text()
    assert re.search(r"^push\s+done", out, re.M), out[-3000:]
    assert not list(checkpoints.glob("train-*"))  # removed once the model was written
