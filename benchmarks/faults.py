"""The fault catalogue: SIGKILL each step of a local pipeline run at named points, and the
runner itself, then check that the run survives with nothing lost, nothing doubled and no
partial model ever visible.

The pipeline runs as a user runs it (`python -m local.run_pipeline`, kfp.local, every step in a
process of its own) on a demo log with planted bad rows (so that the dead letter is not
empty), the default MiniLM encoder (frozen), a few epochs. First an uninterrupted reference run, whose step
timings place the time-based kill points; then one run per fault:

- a step fault kills the step's process and its children (as a pod eviction does) when the
  run reaches the point, and the run goes on through the step's retry policy (`--retries 1`,
  the local form of the compiled pipeline's `set_retry`): the retry writes to the same output
  artifacts, so it must clear what the killed attempt left and resume where a backup lets it;
- a runner fault sends SIGINT (Ctrl-C) or SIGKILL to the runner mid-training, then runs the
  same command again over the same pipeline root: finished steps must come from the cache
  and training must resume from its last epoch (`--checkpoint-root`).

Each finished run is compared with the reference: the rows read, kept and dead-lettered; each
split's (query, product) pairs, none missing or doubled; the dead letter's rows; the test
metrics (bit for bit when training is deterministic, which a fault-free control run checks);
the served repository (exactly one version). A watcher lists the served repository every few
milliseconds through the run and checks each version directory it sees is complete, as a
server polling it would find it. A control run without a fault shows what equality to
expect.

    .venv/bin/python benchmarks/faults.py --out benchmarks/results/faults.md

`--faults NAME,...` runs some of them (names in the table); `--keep` keeps the work folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from components import tfrecords  # noqa: E402
from components.ingest import demo_data  # noqa: E402

MODEL_NAME = "mlpr"
EPOCHS = 4
POLL = 0.01  # seconds between looks at the run
BAD_ROWS = (  # planted rows the dead letter must keep, whatever the fault
    'bad row a,PBAD01,"t",denim jeans,b,c,,d,0.5,12.0,4.0,3,5,0.0,ten,1,0,0,1.0',
    'bad row b,PBAD02,"t",denim jeans,b,c,,d,0.5,12.0,4.0,3,5,0.0,50,-1,0,0,1.0',
    'bad row c,PBAD03,"t",denim jeans,b,c,,d,0.5,12.0,4.0,3,5,0.0,50,60,0,0,1.0',
    "bad row d,PBAD04,too few columns",
)


# --- what a run looks like from outside ------------------------------------------------------


def _read(path: str, binary: bool = False):
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data if binary else data.decode("utf-8", "replace")


def _parent(pid: int) -> int | None:
    stat = _read(f"/proc/{pid}/stat")
    try:
        return int(stat.rsplit(")", 1)[1].split()[1]) if stat else None
    except (IndexError, ValueError):
        return None


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(pid: int) -> list[int]:
    """`pid`'s children, grandchildren, ... (from /proc)."""
    parents = {p: _parent(p) for p in _pids()}
    found, frontier = [], {pid}
    while frontier:
        children = {p for p, parent in parents.items() if parent in frontier}
        found.extend(children)
        frontier = children
    return found


def step_processes(run_dir: str) -> dict[str, int]:
    """The running steps of the run in `run_dir`: step name -> the pid of the kfp executor
    process, found by the output artifacts named in its `--executor_input`."""
    found = {}
    for pid in _pids():
        raw = _read(f"/proc/{pid}/cmdline", binary=True)
        if not raw or b"--executor_input" not in raw:
            continue
        args = raw.decode("utf-8", "replace").split("\0")
        if not args[0].endswith(("python", "python3")) and "python" not in args[0]:
            continue  # the `sh -c` that kfp.local starts each step with
        try:
            executor = json.loads(args[args.index("--executor_input") + 1])
        except (ValueError, IndexError):
            continue
        for artifacts in executor.get("outputs", {}).get("artifacts", {}).values():
            for artifact in artifacts.get("artifacts", []):
                uri = artifact.get("uri", "")
                if uri.startswith(run_dir + "/"):
                    found[uri[len(run_dir) + 1 :].split("/")[0]] = pid
    return found


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> int:
    """Signal `pid` and every process below it at once, as a pod's end does; how many."""
    pids = [pid, *descendants(pid)]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, sig)
    return len(pids)


def files_under(top: str, part: str = "") -> list[str]:
    """Regular files below `top` whose path holds `part`."""
    found = []
    for dirpath, _, names in os.walk(top):
        found += [os.path.join(dirpath, n) for n in names if part in os.path.join(dirpath, n)]
    return found


@dataclasses.dataclass
class Look:
    """One look at a running run."""

    now: float
    run_dir: str | None
    steps: dict[str, int]
    model_root: str
    checkpoint_root: str


@dataclasses.dataclass
class Watch:
    """What the watcher saw through a run: each step's attempts (a retry is a new process:
    [pid, first sighting, last sighting]), the backups' epochs as they appeared, and the
    served versions and whether each was complete when first seen."""

    attempts: dict[str, list[list]] = dataclasses.field(default_factory=dict)
    backups: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    versions: dict[str, bool] = dataclasses.field(default_factory=dict)

    def note(self, look: Look) -> None:
        for step, pid in look.steps.items():
            attempts = self.attempts.setdefault(step, [])
            if not attempts or attempts[-1][0] != pid:
                attempts.append([pid, look.now, look.now])
            attempts[-1][2] = look.now
        if os.path.isdir(look.model_root):
            for name in os.listdir(look.model_root):
                if name.isdigit() and name not in self.versions:
                    self.versions[name] = version_complete(os.path.join(look.model_root, name))
        if look.run_dir:
            epoch = backup_epoch(look.run_dir, look.checkpoint_root)
            if epoch is not None and (not self.backups or self.backups[-1][1] != epoch):
                self.backups.append((look.now, epoch))

    def started(self, step: str) -> float:
        """When the step's latest attempt was first seen."""
        return self.attempts[step][-1][1]

    def seconds(self, step: str) -> float:
        """The step's attempts' time together (the waits between them left out)."""
        return sum(last - first for _, first, last in self.attempts.get(step, []))


def version_complete(path: str) -> bool:
    """Whether a version directory holds a loadable SavedModel (graph and variables)."""
    return os.path.isfile(os.path.join(path, "saved_model.pb")) and bool(
        glob.glob(os.path.join(path, "variables", "variables.index"))
    )


def backup_epoch(run_dir: str, checkpoint_root: str = "") -> int | None:
    """The last epoch (1-based) the train step's backup holds, None without one."""
    states = glob.glob(os.path.join(run_dir, "train", "model", "backup", "current", "state.json"))
    if checkpoint_root:
        states += glob.glob(os.path.join(checkpoint_root, "train-*", "current", "state.json"))
    for path in states:
        text = _read(path)
        try:
            return int(json.loads(text)["epoch"]) + 1 if text else None
        except (ValueError, KeyError):
            continue
    return None


# --- the faults ------------------------------------------------------------------------------


@dataclasses.dataclass
class Timings:
    """The reference run's step spans (seconds), to place the time-based points."""

    steps: dict[str, float]
    first_backup: float  # seconds from the train step's start to its first backup
    epoch: float  # seconds between two backups


@dataclasses.dataclass
class Fault:
    name: str
    step: str  # the step killed; "runner" for the runner itself
    point: str
    # (look, watch, timings) -> what the run looked like when the kill is due, else None
    due: Callable[[Look, Watch, Timings], str | None]
    runner_signal: int = signal.SIGKILL


def _running_for(look: Look, watch: Watch, step: str) -> float:
    if step not in look.steps:
        return -1.0
    return look.now - watch.started(step)


def _temp_files(step: str, output: str) -> Callable:
    def due(look: Look, watch: Watch, t: Timings) -> str | None:
        if step not in look.steps:
            return None
        found = files_under(os.path.join(look.run_dir, step, output), "beam-temp")
        return f"{len(found)} shard file(s) being written" if found else None

    return due


def _transform_analysing(look: Look, watch: Watch, t: Timings) -> str | None:
    if _running_for(look, watch, "transform") < 0.3 * t.steps["transform"]:
        return None
    graph = os.path.join(look.run_dir, "transform", "transform_graph", "transform_fn")
    written = files_under(os.path.join(look.run_dir, "transform", "transformed_examples"))
    if written or os.path.exists(os.path.join(graph, "saved_model.pb")):
        return None
    return f"{0.3 * t.steps['transform']:.1f} s in, no transform graph or example written yet"


def _train_epoch_one(look: Look, watch: Watch, t: Timings) -> str | None:
    if _running_for(look, watch, "train") < 0.7 * t.first_backup:
        return None
    return "in epoch 1, no backup yet" if not watch.backups else None


def _train_mid_epoch(after: int) -> Callable:
    def due(look: Look, watch: Watch, t: Timings) -> str | None:
        if "train" not in look.steps or not watch.backups or watch.backups[-1][1] != after:
            return None
        if look.now - watch.backups[-1][0] < 0.5 * t.epoch:
            return None
        return f"half-way through epoch {after + 1}, backup after epoch {after}"

    return due


def _train_exporting(look: Look, watch: Watch, t: Timings) -> str | None:
    if "train" not in look.steps:
        return None
    model = os.path.join(look.run_dir, "train", "model")
    if os.path.exists(os.path.join(model, "train_info.json")):
        return None
    written = [n for n in ("model.keras", "saved_model") if os.path.exists(os.path.join(model, n))]
    return f"exporting ({', '.join(written)} written so far)" if written else None


def _evaluate_scoring(look: Look, watch: Watch, t: Timings) -> str | None:
    if _running_for(look, watch, "evaluate") < 0.5 * t.steps["evaluate"]:
        return None
    written = files_under(os.path.join(look.run_dir, "evaluate"), "blessing.json")
    return None if written else f"{0.5 * t.steps['evaluate']:.1f} s in, no blessing yet"


def _push_copying(look: Look, watch: Watch, t: Timings) -> str | None:
    if "push" not in look.steps or not os.path.isdir(look.model_root):
        return None
    staging = [n for n in os.listdir(look.model_root) if n.startswith(".")]
    if not staging:
        return None
    copied = len(files_under(os.path.join(look.model_root, staging[0])))
    return f"{copied} file(s) copied into the staging folder"


def _runner_mid_train(look: Look, watch: Watch, t: Timings) -> str | None:
    if "train" not in look.steps or not watch.backups:
        return None
    return f"train in epoch {watch.backups[-1][1] + 1}, backup after epoch {watch.backups[-1][1]}"


FAULTS = (
    Fault("ingest-writing", "ingest", "while writing shards", _temp_files("ingest", "examples")),
    Fault("transform-analysing", "transform", "during analysis", _transform_analysing),
    Fault(
        "transform-writing",
        "transform",
        "while writing",
        _temp_files("transform", "transformed_examples"),
    ),
    Fault("train-epoch-1", "train", "in epoch 1", _train_epoch_one),
    Fault("train-mid-epoch", "train", "mid-epoch 2", _train_mid_epoch(1)),
    Fault(
        "train-last-epoch", "train", f"mid-epoch {EPOCHS} (the last)", _train_mid_epoch(EPOCHS - 1)
    ),
    Fault("train-export", "train", "during export", _train_exporting),
    Fault("evaluate-scoring", "evaluate", "while scoring", _evaluate_scoring),
    Fault("push-copying", "push", "during the copy", _push_copying),
    Fault("runner-ctrl-c", "runner", "Ctrl-C mid-train", _runner_mid_train, signal.SIGINT),
    Fault("runner-sigkill", "runner", "SIGKILL mid-train", _runner_mid_train, signal.SIGKILL),
)


# --- running and comparing -------------------------------------------------------------------


def write_input(path: str, queries: int) -> int:
    """The demo log with BAD_ROWS planted in the middle; returns its data rows."""
    demo_data.write(demo_data.generate(num_queries=queries, seed=0), path)
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    middle = len(lines) // 2
    lines[middle:middle] = BAD_ROWS
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return len(lines) - 1


def command(work: str, name: str, input_csv: str, encoder: str) -> list[str]:
    return [
        sys.executable, "-m", "local.run_pipeline",
        "--input-data", input_csv,
        "--encoder-preset", encoder,
        "--max-epochs", str(EPOCHS),
        "--auc-floor", "0",
        "--reference-check", "off",
        "--model-name", MODEL_NAME,
        "--model-base", os.path.join(work, name, "serving"),
        "--pipeline-root", os.path.join(work, name, "root"),
        "--checkpoint-root", os.path.join(work, name, "checkpoints"),
    ]  # fmt: skip


@dataclasses.dataclass
class Run:
    code: int
    seconds: float
    out: str
    watch: Watch
    killed: str | None = None  # what the run looked like when the fault was injected
    processes_killed: int = 0
    killed_at: float | None = None  # seconds into the step's attempt


def run(cmd: list[str], work_name: str, fault: Fault | None, timings: Timings | None) -> Run:
    """Run `cmd` and watch it; inject `fault` once its point is reached."""
    root = cmd[cmd.index("--pipeline-root") + 1]
    model_root = os.path.join(cmd[cmd.index("--model-base") + 1], MODEL_NAME)
    checkpoint_root = cmd[cmd.index("--checkpoint-root") + 1]
    os.makedirs(root, exist_ok=True)
    before = set(os.listdir(root))
    out_path = os.path.join(os.path.dirname(root), f"{work_name}.out")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    watch, state = Watch(), {"killed": None, "count": 0}
    start = time.monotonic()
    with open(out_path, "w", encoding="utf-8") as out:
        # As a user's shell starts it: with Ctrl-C's SIGINT handled, even when this script runs
        # in the background (where the shell leaves SIGINT ignored, and Python then keeps it so).
        runner = subprocess.Popen(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        stop = threading.Event()

        def look_loop() -> None:
            run_dir = None
            while not stop.is_set():
                if run_dir is None:
                    new = sorted(set(os.listdir(root)) - before - {".kfp_cache"})
                    run_dir = os.path.join(root, new[0]) if new else None
                look = Look(
                    time.monotonic(), run_dir, step_processes(run_dir) if run_dir else {},
                    model_root, checkpoint_root,
                )  # fmt: skip
                watch.note(look)
                if fault and state["killed"] is None and run_dir:
                    what = fault.due(look, watch, timings)
                    if what is not None:
                        state["killed"] = what
                        step = "train" if fault.step == "runner" else fault.step
                        state["at"] = look.now - watch.started(step)
                        if fault.step == "runner":
                            runner.send_signal(fault.runner_signal)
                            state["count"] = 1
                        else:
                            state["count"] = kill_tree(look.steps[fault.step])
                time.sleep(POLL)

        thread = threading.Thread(target=look_loop, daemon=True)
        thread.start()
        code = runner.wait()
        stop.set()
        thread.join()
    text = _read(out_path) or ""
    return Run(
        code, time.monotonic() - start, text, watch, state["killed"], state["count"],
        state.get("at"),
    )  # fmt: skip


def run_outputs(root: str) -> dict[str, str]:
    """The newest of each output file the runs under `root` wrote (a cached step's output
    stays in the run that made it)."""
    wanted = {
        "counts": "ingest/examples/counts.json",
        "results": "evaluate/blessing/eval_results.json",
        "train_info": "train/model/train_info.json",
    }
    found = {}
    for key, rel in wanted.items():
        paths = sorted(glob.glob(os.path.join(root, "*", rel)), key=os.path.getmtime)
        if paths:
            found[key] = paths[-1]
    if "counts" in found:
        found["examples"] = os.path.dirname(found["counts"])
    return found


def split_pairs(examples: str) -> dict[str, Counter]:
    """Each split's (query, product_id) pairs, counted, from its Parquet or TFRecord shards."""
    pairs = {}
    for split in ("train", "eval", "test"):
        counted = Counter()
        for path in sorted(glob.glob(os.path.join(examples, split, "data-*"))):
            counted.update(_pairs_of(path))
        pairs[split] = counted
    if not sum(map(len, pairs.values())):
        raise RuntimeError(f"no (query, product) pair read under {examples}")
    return pairs


def _pairs_of(path: str) -> list[tuple]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["query", "product_id"])
        return list(zip(table["query"].to_pylist(), table["product_id"].to_pylist(), strict=True))
    import tensorflow as tf

    found = []
    for record in tfrecords.read_records(path):
        features = tf.train.Example.FromString(record).features.feature
        found.append(
            tuple(features[n].bytes_list.value[0].decode() for n in ("query", "product_id"))
        )
    return found


def dead_letter_rows(examples: str) -> Counter:
    rows = Counter()
    for path in glob.glob(os.path.join(examples, "dead_letter", "*")):
        for line in (_read(path) or "").splitlines():
            record = json.loads(line)
            rows[(record.get("row"), record.get("reason"), record.get("message"))] += 1
    return rows


@dataclasses.dataclass
class Outcome:
    """One finished run against the reference."""

    counts_equal: bool
    rows_lost: int
    rows_doubled: int
    dead_letter_equal: bool
    metrics_equal: bool
    metric_max_diff: float
    versions: list[str]
    partial_versions_seen: int
    resumed_after: int | None

    def ok(self) -> bool:
        return (
            self.counts_equal
            and self.rows_lost == 0
            and self.rows_doubled == 0
            and self.dead_letter_equal
            and self.versions == ["1"]
            and self.partial_versions_seen == 0
        )


def read_run(root: str) -> dict:
    found = run_outputs(root)
    results = json.loads(_read(found["results"]))
    return {
        "counts": json.loads(_read(found["counts"])),
        "pairs": split_pairs(found["examples"]),
        "dead_letter": dead_letter_rows(found["examples"]),
        "metrics": {"candidate": results["candidate"], "references": results.get("references")},
    }


def _numbers(value, prefix="") -> dict[str, float]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_numbers(v, f"{prefix}{k}/"))
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {prefix: float(value)}
    return {}


def compare(reference: dict, root: str, model_root: str, watch: Watch, logs: str) -> Outcome:
    got = read_run(root)
    lost = doubled = 0
    for split, ref_pairs in reference["pairs"].items():
        pairs = got["pairs"][split]
        lost += sum((ref_pairs - pairs).values())
        doubled += sum((pairs - ref_pairs).values())  # a pair twice, or one not in the reference
    ref_numbers, numbers = _numbers(reference["metrics"]), _numbers(got["metrics"])
    diffs = [abs(numbers.get(k, float("inf")) - v) for k, v in ref_numbers.items()]
    resumed = re.findall(r"resuming after epoch (\d+) of", logs)
    versions = sorted(n for n in os.listdir(model_root) if n.isdigit())
    return Outcome(
        counts_equal=got["counts"] == reference["counts"],
        rows_lost=lost,
        rows_doubled=doubled,
        dead_letter_equal=got["dead_letter"] == reference["dead_letter"],
        metrics_equal=numbers == ref_numbers,
        metric_max_diff=max(diffs, default=0.0),
        versions=versions,
        partial_versions_seen=sum(not complete for complete in watch.versions.values()),
        resumed_after=int(resumed[-1]) if resumed else None,
    )


def train_logs(root: str) -> str:
    return "\n".join(
        _read(p) or "" for p in sorted(glob.glob(os.path.join(root, "*", "logs", "train.log")))
    )


def timings_of(watch: Watch) -> Timings:
    steps = {step: watch.seconds(step) for step in watch.attempts}
    train_start = watch.started("train")
    times = [t for t, _ in watch.backups]
    if not times:
        raise RuntimeError("the reference run's train step wrote no backup")
    epoch = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else times[0] - train_start
    return Timings(steps, times[0] - train_start, epoch)


@click.command()
@click.option("--out", default=None, help="Write the table here (Markdown).")
@click.option("--faults", "names", default="", help="Comma-separated fault names (default: all).")
@click.option("--queries", default=120, show_default=True, help="Demo queries in the log.")
@click.option("--work", default=None, help="Work folder (default: a new temporary one).")
@click.option(
    "--encoder",
    default="all-minilm-l6-v2",
    show_default=True,
    help="The text encoder preset (the pipeline's default; `tiny` for a quick look).",
)
@click.option("--keep", is_flag=True, help="Keep the work folder.")
def main(out, names, queries, work, encoder, keep) -> None:
    chosen = [f for f in FAULTS if not names or f.name in names.split(",")]
    unknown = set(filter(None, names.split(","))) - {f.name for f in FAULTS}
    if unknown:
        raise click.BadParameter(
            f"unknown fault(s) {sorted(unknown)}; known: {[f.name for f in FAULTS]}"
        )
    work = work or tempfile.mkdtemp(prefix="mlpr-faults-")
    os.makedirs(work, exist_ok=True)
    input_csv = os.path.join(work, "log.csv")
    rows = write_input(input_csv, queries)
    started = time.monotonic()

    print(f"reference run ({rows} rows, {len(BAD_ROWS)} of them bad) ...", flush=True)
    ref = run(command(work, "reference", input_csv, encoder), "reference", None, None)
    if ref.code:
        sys.exit(f"the reference run failed:\n{ref.out[-3000:]}")
    timings = timings_of(ref.watch)
    reference = read_run(os.path.join(work, "reference", "root"))
    print(
        f"  {ref.seconds:.0f} s; steps (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in timings.steps.items()),
        flush=True,
    )

    table = []
    for fault in [Fault("control", "-", "no fault", lambda *_: None), *chosen]:
        cmd = command(work, fault.name, input_csv, encoder)
        step_fault = fault.step not in ("runner", "-")
        first = run(cmd + (["--retries", "1"] if step_fault else []), fault.name, fault, timings)
        runs = [first]
        if fault.step == "runner":
            time.sleep(2.0)  # the steps follow the runner within a second (components/lifeline.py)
            left = [
                p
                for p in _pids()
                if os.path.join(work, fault.name) in (_read(f"/proc/{p}/cmdline") or "")
            ]
            runs.append(run(cmd, fault.name + "-again", None, None))
        else:
            left = []
        last = runs[-1]
        root = cmd[cmd.index("--pipeline-root") + 1]
        model_root = os.path.join(cmd[cmd.index("--model-base") + 1], MODEL_NAME)
        row = {
            "fault": fault.name, "step": fault.step, "point": fault.point,
            "injected": first.killed, "killed_at": first.killed_at,
            "processes_killed": first.processes_killed, "exit": [r.code for r in runs],
            "seconds": sum(r.seconds for r in runs), "left_behind": len(left),
            "attempts": len(first.watch.attempts.get(fault.step, [])) if step_fault else None,
        }  # fmt: skip
        if fault.step == "runner":
            row["cached"] = sorted(set(re.findall(r"^(\w+)\s+cached", last.out, re.M)))
        if last.code == 0:
            watch = Watch(versions={**first.watch.versions, **last.watch.versions})
            outcome = compare(reference, root, model_root, watch, train_logs(root))
            row.update(
                dataclasses.asdict(outcome),
                survived=outcome.ok()
                and (fault.step == "-" or first.killed is not None)
                and (not step_fault or row["attempts"] >= 2)
                and (fault.step != "runner" or first.code != 0)  # the runner did stop
                and not left,
            )
            if fault.step == "train":
                row["train_seconds"] = first.watch.seconds("train")
        else:
            row.update(survived=False, tail=last.out[-2000:])
        table.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "tail"}), flush=True)

    minutes = (time.monotonic() - started) / 60
    report = render(table, timings, rows, queries, minutes, chosen, encoder)
    print(report)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(report)
        with open(os.path.splitext(out)[0] + ".json", "w", encoding="utf-8") as fh:
            json.dump({"timings": dataclasses.asdict(timings), "runs": table}, fh, indent=2)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)


def render(table, timings, rows, queries, minutes, chosen, encoder) -> str:
    some = "" if len(chosen) == len(FAULTS) else f" --faults {','.join(f.name for f in chosen)}"
    lines = [
        "# Fault catalogue: each step killed at named points, then retried",
        "",
        f"Command: `.venv/bin/python benchmarks/faults.py --queries {queries} --encoder {encoder}"
        f"{some} --out benchmarks/results/faults.md`",
        "",
        f"Log: the demo shop, {queries} queries, {rows} rows of which {len(BAD_ROWS)} are planted "
        f"bad rows; encoder `{encoder}`, {EPOCHS} epochs; each fault in a local run of its own "
        f"(`local.run_pipeline`, a step fault with `--retries 1`, a runner fault run again with "
        f"the same command). {minutes:.1f} min on {os.cpu_count()} CPUs. The reference run's "
        "steps (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in timings.steps.items())
        + f"; an epoch {timings.epoch:.1f} s.",
        "",
        "| fault | killed when | exit | survived | rows lost | rows doubled | dead letter equal "
        "| metrics equal | versions | partial versions seen | resumed after epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        if "rows_lost" in r:
            cells = [
                r["rows_lost"], r["rows_doubled"], "yes" if r["dead_letter_equal"] else "NO",
                "yes" if r["metrics_equal"] else f"no (max diff {r['metric_max_diff']:.2g})",
                ",".join(r["versions"]), r["partial_versions_seen"],
                r["resumed_after"] if r["resumed_after"] is not None else "-",
            ]  # fmt: skip
        else:
            cells = ["-"] * 7
        when = r["injected"] or "not reached"
        if r["killed_at"] is not None:
            where = "the train step" if r["step"] == "runner" else "the attempt"
            when += f" ({r['killed_at']:.1f} s into {where})"
        exits = "/".join(map(str, r["exit"]))
        if r["attempts"]:
            exits += f" ({r['attempts']} attempts)"
        if r["step"] == "runner":
            exits += f"; cached again: {', '.join(r.get('cached', [])) or 'none'}"
            exits += f"; processes left: {r['left_behind']}"
        lines.append(
            f"| {r['fault']} ({r['step']}, {r['point']}) | {when} | {exits} | "
            f"{'yes' if r['survived'] else 'NO'} | " + " | ".join(map(str, cells)) + " |"
        )
    faults = [r for r in table if r["fault"] != "control"]
    lines += [
        "",
        f"Survived: {sum(r['survived'] for r in faults)} of {len(faults)} faults; rows lost "
        f"{sum(r.get('rows_lost', 0) for r in faults)}, rows doubled "
        f"{sum(r.get('rows_doubled', 0) for r in faults)}, partial versions seen "
        f"{sum(r.get('partial_versions_seen', 0) for r in faults)}.",
    ]
    ref_train = timings.steps.get("train")
    train = [r for r in table if r.get("train_seconds") is not None and r["killed_at"]]
    if train and ref_train:
        lines += [
            "",
            f"What a killed train step costs (the uninterrupted step took {ref_train:.1f} s). "
            "Without a backup, its retry would redo everything the killed attempt did:",
            "",
            "| fault | killed after | both attempts | cost of the fault | without the backup |",
            "|---|---|---|---|---|",
        ]
        for r in train:
            cost = r["train_seconds"] - ref_train
            lines.append(
                f"| {r['fault']} | {r['killed_at']:.1f} s | {r['train_seconds']:.1f} s "
                f"| {cost:+.1f} s | about +{r['killed_at']:.1f} s |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
