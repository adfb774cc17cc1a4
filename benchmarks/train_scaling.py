"""Training throughput on one worker and on two (MultiWorkerMirroredStrategy over 127.0.0.1),
and the single-device path against an earlier tree, measured in this run.

    .venv/bin/python benchmarks/train_scaling.py --seeds 0,1 --reference-tree DIR \\
        --out benchmarks/results/train_scaling_cpu.md
    # DIR: git worktree add DIR <commit> (with .venv linked into it)

    # On a machine with GPUs and TensorFlow: one GPU against all of them (MirroredStrategy)
    .venv/bin/python benchmarks/train_scaling.py --gpus 4 --seeds 0 --out train_scaling_gpu.md

Every run is the train step as the pipeline runs it (`run_training` with the pipeline's
settings, components/train/config.train_config: MLPR with MiniLM frozen, its text cache built
in the run, early stopping on the eval split, the export; changed only by --batch-size,
--max-epochs and the seed, whose defaults are the pipeline's), in a fresh process, on the demo shop (`--queries`). Two workers are two
processes, each with its own TF_CONFIG, at the same per-replica batch (so twice the global
batch). Reports per run: examples per second of the fit (examples x epochs / fit seconds),
the seconds of the whole step, and the test split's AUC and NDCG@5 per task (the evaluate
step's scoring of the exported model); the scaling is the ratio of the mean examples/s.

A step's time splits into compute, the gradient all-reduce and input: `--breakdown` also
times one all-reduce of the model's trainable weights between the two processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What the default run changes from the pipeline's training settings: nothing.
TRAIN_CHANGES: dict[str, str] = {}

# One training process: run_training as the train step calls it, in the tree it runs from
# (an earlier tree has the same run_training, and train_config: the pipeline's defaults, or,
# before STEP_DEFAULTS, train_config(architecture, fine_tune_layers, ...)). Prints the
# TrainResult.
RUN_ONE = """
import json, os, sys
settings = json.loads(sys.argv[1])
if settings.get("gpus"):
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")[: settings["gpus"]]
    tf.config.set_visible_devices(gpus, "GPU")
from components.train import config as C
from components.train.training import run_training
if hasattr(C, "STEP_DEFAULTS"):
    config = C.train_config(**settings["config"])
else:
    config = C.train_config("mlpr", "0", **settings["config"])
result = run_training(settings["tft"], settings["tx"], settings["out"], config, verbose=0)
print("RESULT " + json.dumps({k: getattr(result, k) for k in (
    "epochs_run", "best_epoch", "train_examples", "seconds", "fit_seconds")}))
"""

# One all-reduce of `floats` float32 values between the processes of TF_CONFIG, timed.
ALL_REDUCE = """
import json, sys, time
import tensorflow as tf
floats = int(sys.argv[1])
strategy = tf.distribute.MultiWorkerMirroredStrategy()
values = tf.ones([floats])
@tf.function
def step():
    return strategy.run(
        lambda: tf.distribute.get_replica_context().all_reduce("SUM", values)
    )
def run():
    return step().numpy()
for _ in range(3):
    run()
times = []
for _ in range(20):
    start = time.perf_counter(); run(); times.append(time.perf_counter() - start)
times.sort()
print("ALLREDUCE " + json.dumps({"ms": 1000 * times[len(times) // 2]}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(code: str, args: list[str], tree: str, env: dict) -> subprocess.Popen:
    # Output into files: a full pipe would stall a process while the others are read.
    with tempfile.NamedTemporaryFile(
        "w+", prefix="mlpr-scaling-", suffix=".log", delete=False
    ) as log:
        process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": tree, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    process.log_path = log.name
    return process


def _result(process: subprocess.Popen, tag: str) -> dict:
    process.wait(timeout=3600)
    with open(process.log_path, encoding="utf-8", errors="replace") as fh:
        out = fh.read()
    lines = [ln for ln in out.splitlines() if ln.startswith(tag + " ")]
    if process.returncode != 0 or not lines:
        raise click.ClickException(f"a run failed ({process.returncode}):\n{out[-3000:]}")
    os.remove(process.log_path)
    return json.loads(lines[-1][len(tag) + 1 :])


def run_settings(batch_size: int, max_epochs: int, seed: int) -> dict:
    """train_config's changes of one run (RUN_ONE's `config`). The encoder is named for an
    earlier tree, whose train_config did not start from the pipeline's."""
    from model.presets import MINILM

    return {"encoder_preset": MINILM, "batch_size": batch_size, "max_epochs": max_epochs,
            "seed": seed}  # fmt: skip


def default_train_config():
    """The TrainConfig of the default run's first training, at its first seed (TRAIN_CHANGES
    says what it changes)."""
    from components.train.config import train_config

    params = main.make_context("train_scaling", []).params
    seed = int(params["seeds"].split(",")[0])
    return train_config(**run_settings(params["batch_size"], params["max_epochs"], seed))


def train_runs(paths: dict, config: dict, workers: int, tree: str, out: str, gpus: int = 0):
    """The chief's TrainResult of one run of `workers` processes; its model in `out`."""
    settings = {**paths, "config": config, "out": out, "gpus": gpus}
    env_of = [{}]
    if workers > 1:
        cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(workers)]}
        env_of = [
            {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
            for i in range(workers)
        ]
    processes = [_launch(RUN_ONE, [json.dumps(settings)], tree, env) for env in env_of]
    results = [_result(p, "RESULT") for p in processes]
    return results[0]


def all_reduce_ms(floats: int) -> float:
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    processes = [
        _launch(
            ALL_REDUCE,
            [str(floats)],
            REPO,
            {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
        )
        for i in range(2)
    ]
    return [_result(p, "ALLREDUCE") for p in processes][0]["ms"]


def test_quality(model_dir: str, examples: str) -> dict:
    from components.evaluate.scoring import compute_metrics, score_split
    from contract import layout
    from contract.schema import DEFAULT_TASKS

    return compute_metrics(
        score_split(
            os.path.join(model_dir, layout.SAVED_MODEL_DIR),
            layout.raw_split_pattern(examples, "test"),
            DEFAULT_TASKS,
        )
    )


def trainable_floats(model_dir: str) -> int:
    import keras

    import model.ranker  # noqa: F401  (registers the ranker and its layers)
    from contract import layout

    ranker = keras.saving.load_model(os.path.join(model_dir, layout.KERAS_MODEL_FILE))
    cached = [w for w in ranker.trainable_weights if "transformer" not in w.path]
    return int(sum(np.prod(w.shape) for w in cached))


@click.command()
@click.option("--queries", default=600, show_default=True, help="Demo shop size.")
@click.option("--seeds", default="0,1", show_default=True)
@click.option("--batch-size", default=128, show_default=True, help="Per replica.")
@click.option("--max-epochs", default=8, show_default=True)
@click.option("--gpus", default=0, show_default=True, help="Compare 1 GPU with this many.")
@click.option("--reference-tree", default="", help="An earlier checkout: its one-device run.")
@click.option("--breakdown/--no-breakdown", default=True, show_default=True)
@click.option("--out", default=None, help="Also write the Markdown report here.")
def main(queries, seeds, batch_size, max_epochs, gpus, reference_tree, breakdown, out) -> None:
    from paper_tables import prepare
    from reports import print_and_save, reference_tree_argument

    from contract import schema as S

    seeds = [int(s) for s in seeds.split(",")]
    reference = os.path.abspath(reference_tree) if reference_tree else ""
    work = tempfile.mkdtemp(prefix="mlpr-train-scaling-")
    click.echo(f"preparing the demo shop ({queries} queries) in {work}", err=True)
    examples, tft_dir, transformed, _ = prepare("demo", queries, 0, work)
    paths = {"tft": tft_dir, "tx": transformed}

    setups = (
        [("1 GPU", 1, REPO, 1), (f"{gpus} GPUs", 1, REPO, gpus)]
        if gpus
        else [
            ("1 worker", 1, REPO, 0),
            ("2 workers", 2, REPO, 0),
        ]
    )
    if reference and not gpus:
        setups.append(("1 worker, reference tree", 1, reference, 0))
    rows = []
    for seed in seeds:
        for label, workers, tree, gpu_count in setups:  # in turn: drift reaches every setup
            model_dir = os.path.join(work, f"model-{label.replace(' ', '_')}-{seed}")
            click.echo(f"[{label}] seed {seed}", err=True)
            config = run_settings(batch_size, max_epochs, seed)
            result = train_runs(paths, config, workers, tree, model_dir, gpu_count)
            speed = result["train_examples"] * result["epochs_run"] / result["fit_seconds"]
            rows.append({"label": label, "seed": seed, "speed": speed, **result,
                         "metrics": test_quality(model_dir, examples)})  # fmt: skip
            with open(os.path.join(work, "rows.json"), "w") as fh:  # kept should a later step fail
                json.dump(rows, fh)

    def mean(label, key):
        values = [r[key] if key in r else r["metrics"][key] for r in rows if r["label"] == label]
        return float(np.mean(values)), float(np.std(values))

    labels = [s[0] for s in setups]
    lines = [
        "# Training throughput: one worker and two, and the single-device path",
        "",
        f"    .venv/bin/python benchmarks/train_scaling.py --queries {queries} "
        f"--seeds {','.join(map(str, seeds))} --batch-size {batch_size} "
        f"--max-epochs {max_epochs}"
        + (f" --gpus {gpus}" if gpus else "")
        + (reference_tree_argument(reference) if reference else ""),
        "",
        f"MLPR, MiniLM frozen, demo shop ({queries} queries), batch {batch_size} per replica; "
        f"{os.cpu_count()} CPUs.",
        "",
        "| setup | seed | epochs (best) | fit examples/s | fit s | step s | "
        + " | ".join(f"{t} AUC / NDCG@5" for t in S.DEFAULT_TASKS)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(S.DEFAULT_TASKS),
    ]
    for r in rows:
        m = r["metrics"]
        lines.append(
            f"| {r['label']} | {r['seed']} | {r['epochs_run']} ({r['best_epoch']}) | "
            f"{r['speed']:.0f} | {r['fit_seconds']:.1f} | {r['seconds']:.1f} | "
            + " | ".join(f"{m[f'{t}/auc']:.4f} / {m[f'{t}/ndcg@5']:.4f}" for t in S.DEFAULT_TASKS)
            + " |"
        )
    first = labels[0]
    lines += ["", "| setup | fit examples/s (mean) | vs " + first + " | "
              + " | ".join(f"{t} NDCG@5 mean ± std" for t in S.DEFAULT_TASKS) + " |",
              "|---|---|---|" + "---|" * len(S.DEFAULT_TASKS)]  # fmt: skip
    for label in labels:
        speed = mean(label, "speed")[0]
        ndcg = [mean(label, f"{t}/ndcg@5") for t in S.DEFAULT_TASKS]
        lines.append(
            f"| {label} | {speed:.0f} | {speed / mean(first, 'speed')[0]:.2f}x | "
            + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in ndcg)
            + " |"
        )
    if breakdown and not gpus:
        floats = trainable_floats(os.path.join(work, f"model-1_worker-{seeds[0]}"))
        ms = all_reduce_ms(floats)
        one = [r for r in rows if r["label"] == "1 worker"]
        two = [r for r in rows if r["label"] == "2 workers"]
        step_one = float(np.mean([r["fit_seconds"] / (r["epochs_run"] * np.ceil(r["train_examples"] / batch_size)) for r in one]))  # fmt: skip
        step_two = float(np.mean([r["fit_seconds"] / (r["epochs_run"] * np.ceil(r["train_examples"] / (2 * batch_size))) for r in two]))  # fmt: skip
        lines += [
            "",
            f"Breakdown: one step (fit seconds / steps, the eval passes included) takes "
            f"{1000 * step_one:.1f} ms on one worker (batch {batch_size}) and "
            f"{1000 * step_two:.1f} ms on two (global batch {2 * batch_size}); one all-reduce "
            f"of the {floats:,} trainable floats between the two processes takes {ms:.1f} ms "
            "(median of 20, timed alone).",
        ]
    print_and_save("\n".join(lines) + "\n", out)


if __name__ == "__main__":
    main()
