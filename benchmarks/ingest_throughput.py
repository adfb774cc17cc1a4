"""Rows per second of ingest and transform on Beam's local runner, with peak memory.

    .venv/bin/python benchmarks/ingest_throughput.py --rows 100000,1000000

For each size a synthetic raw log (valid rows, about 20 products per query, every column of
the demo schema) is written as CSV (not timed; `--files K`: cut into K files of consecutive
rows, as a partitioned export), then ingest and transform each run in a fresh child process
exactly as the pipeline runs them (`job.run_ingest`, `run_transform`, local runner), so each
step's peak resident memory is its own. Prints seconds, rows per second and peak memory per
step, measured in this run, and the peak memory's growth between sizes (flat: the rows
stream). In the same run it times the floor, a minimal pyarrow read + check + Parquet write of
the same file without Beam, and with `--reference-tree DIR` (a checkout of an earlier commit:
`git worktree add DIR COMMIT`) that tree's ingest on the same file; the report gives ingest's
ratio to both. `--profile` adds the functions where ingest and transform spend their time
(cProfile, one more run of each at the smallest size, apart from the timed ones).

`--beam-workers 1,2` runs ingest and transform once per number of local Beam workers
(`--direct_num_workers`; components/beam_runner.py), each transform over its own ingest's
output, and gives each count's speed against the first; without it they run as the pipeline
runs them (`beam_runner.local_workers`). With several workers a job's memory is its own
process's and its workers': the report gives the job process's peak, the largest peak of one
worker, and the peak of all of them together (sampled every 0.2 s from /proc).

The same jobs run on Dataflow, Flink or Spark with Beam options only (the pipeline's
`beam_pipeline_args`, or `--beam-arg` of `./dev demo`); see docs/scaling.md.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

import click
import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = np.array(
    [
        "red",
        "blue",
        "black",
        "white",
        "leather",
        "cotton",
        "running",
        "trail",
        "office",
        "gaming",
        "wireless",
        "steel",
        "oak",
        "small",
        "large",
        "kids",
        "men",
        "women",
        "sofa",
        "boots",
        "lamp",
        "desk",
        "chair",
        "headset",
        "watch",
        "kettle",
        "jacket",
    ]
)


def write_log(path: str, rows: int, seed: int = 0, chunk: int = 100_000) -> None:
    """A valid synthetic log of `rows` rows, written in chunks (constant memory)."""
    from contract import schema as S

    rng = np.random.default_rng(seed)
    first = True
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        index = np.arange(start, start + n)
        query = index // 20
        words = WORDS[rng.integers(0, len(WORDS), size=(n, 4))]
        impressions = rng.integers(6, 400, n)
        clicks = rng.binomial(impressions, 0.1)
        carts = rng.binomial(clicks, 0.3)
        purchases = rng.binomial(carts, 0.4)
        frame = pd.DataFrame(
            {
                S.QUERY: [f"{w[0]} {w[1]} {q}" for w, q in zip(words, query, strict=True)],
                S.PRODUCT_ID: [f"p{i}" for i in index],
                S.TITLE: [" ".join(w) for w in words],
                S.PRODUCT_TYPE: words[:, 3],
                S.BRAND: [f"brand{b}" for b in rng.integers(0, 200, n)],
                S.COLOR: words[:, 0],
                S.GENDER: rng.choice(["men", "women", ""], n),
                S.DESCRIPTION: [" ".join(w[::-1]) for w in words],
                "lexical_score": rng.random(n).round(3),
                "price": rng.lognormal(3.5, 1.0, n).round(2),
                "rating": (rng.random(n) * 5).round(1),
                "review_count": rng.integers(0, 500, n),
                "popularity": rng.integers(0, 3000, n),
                "discount": (rng.random(n) * 0.5).round(2),
                S.IMPRESSIONS: impressions,
                S.CLICKS: clicks,
                S.ADD_TO_CART: carts,
                S.PURCHASES: purchases,
                S.POSITION: (rng.random(n) * 30 + 1).round(1),
            }
        )
        frame.to_csv(path, mode="w" if first else "a", header=first, index=False)
        first = False


def split_log(path: str, rows: int, files: int) -> str:
    """Cut the CSV log at `path` (one row per line) into `files` files of consecutive rows,
    each with the header, and remove it; the glob of the parts."""
    stem = os.path.splitext(path)[0]
    per_file = -(-rows // files)
    with open(path, encoding="utf-8") as whole:
        header = whole.readline()
        for part in range(files):
            with open(f"{stem}-{part:03d}.csv", "w", encoding="utf-8") as out:
                out.write(header)
                out.writelines(itertools.islice(whole, per_file))
    os.remove(path)
    return f"{stem}-*.csv"


MEMORY = """
class Memory(threading.Thread):
    # The Beam workers among the child processes every 0.2 s, from /proc: the largest peak
    # of one (VmHWM) and of this process and its workers together (VmRSS summed). Other
    # children are left out: one just forked shows this process's memory until it execs.
    def __init__(self):
        super().__init__(daemon=True)
        self.worker_peak = self.total_peak = 0
    @staticmethod
    def kib(pid, field):
        with open(f"/proc/{pid}/status") as f:
            return next((int(l.split()[1]) for l in f if l.startswith(field + ":")), 0)
    def children(self):
        found = []
        for name in os.listdir("/proc"):
            try:
                if name.isdigit() and int(open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    command = open(f"/proc/{name}/cmdline", "rb").read()
                    if b"beam_worker" in command or b"sdk_worker_main" in command:
                        found.append(int(name))
            except (OSError, ValueError, IndexError):
                pass
        return found
    def run(self):
        while True:
            total = self.kib(os.getpid(), "VmRSS")
            for pid in self.children():
                try:
                    self.worker_peak = max(self.worker_peak, self.kib(pid, "VmHWM"))
                    total += self.kib(pid, "VmRSS")
                except OSError:
                    pass
            self.total_peak = max(self.total_peak, total)
            time.sleep(0.2)
memory = Memory()
memory.start()
"""

FLOOR = """
def floor(source, target):
    # The least any ingest of this file can do: pyarrow reads it in blocks (every column as
    # text, as ingest reads CSV), casts the numbers, checks the required text and the
    # funnel, and writes the rows as Parquet. No Beam, no splits, no dead letters.
    import pyarrow as pa, pyarrow.compute as pc, pyarrow.csv as pa_csv, pyarrow.parquet as pq
    from contract import schema as S
    numeric = [*S.DEMO_SCHEMA.feature_names, S.POSITION]
    reader = pa_csv.open_csv(source, convert_options=pa_csv.ConvertOptions(
        column_types={c: pa.string() for c in [*S.TEXT_COLUMNS, *S.DEMO_SCHEMA.funnel, *numeric]},
        strings_can_be_null=False))
    writer, rows = None, 0
    for batch in reader:
        columns = {n: batch.column(n) for n in batch.schema.names}
        for c in S.DEMO_SCHEMA.funnel:
            columns[c] = pc.cast(columns[c], pa.int64())
        for c in numeric:
            columns[c] = pc.cast(pc.if_else(pc.equal(columns[c], ""), None, columns[c]), pa.float64())
        ok = pc.and_(pc.greater_equal(columns[S.IMPRESSIONS], columns[S.CLICKS]),
                     pc.greater_equal(columns[S.CLICKS], columns[S.ADD_TO_CART]))
        for c in S.REQUIRED_TEXT_COLUMNS:
            ok = pc.and_(ok, pc.not_equal(pc.utf8_trim_whitespace(columns[c]), ""))
        table = pa.Table.from_pydict(columns).filter(ok)
        writer = writer or pq.ParquetWriter(target, table.schema)
        writer.write_table(table)
        rows += batch.num_rows
    writer.close()
    return rows
"""


def _child(
    stage: str,
    source: str,
    work: str,
    profile: bool,
    tree: str = ROOT,
    beam_args: tuple[str, ...] = (),
) -> dict:
    """Run one stage in a fresh interpreter with the project at `tree`; its seconds, its peak
    RSS, the largest peak RSS of one of its child processes (Beam workers) and the peak of
    all of them together."""
    code = f"""
import cProfile, glob, io, json, os, pstats, resource, sys, threading, time
sys.path.insert(0, {tree!r})
{MEMORY}
from contract import schema as S
from components.ingest import job
from components.transform.transform import run_transform
{FLOOR}
stage, source, work, profile = {stage!r}, {source!r}, {work!r}, {profile!r}
beam_args = {list(beam_args)!r}
def cpu_seconds():  # this process's and its ended children's (the Beam workers')
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in used)
profiler = cProfile.Profile() if profile else None
cpu_at_start = cpu_seconds()
start = time.perf_counter()
if profiler: profiler.enable()
if stage == "ingest":
    counts = job.run_ingest(source, work + "/examples", S.DEMO_SCHEMA, beam_args=beam_args)
    rows = counts.rows_read
elif stage == "floor":
    rows = sum(floor(path, work + "/floor.parquet") for path in sorted(glob.glob(source)))
else:
    run_transform(work + "/examples", work + "/tft", work + "/tx", beam_args=beam_args,
                  temp_dir=work + "/tmp")
    rows = json.load(open(work + "/examples/counts.json"))["rows_kept"]
if profiler: profiler.disable()
seconds = time.perf_counter() - start
top = ""
if profiler:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
    top = out.getvalue()
cpu = cpu_seconds() - cpu_at_start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps({{"seconds": seconds, "rows": rows, "peak_mb": peak, "cpu": cpu,
                              "worker_peak_mb": memory.worker_peak / 1024,
                              "total_peak_mb": memory.total_peak / 1024, "profile": top}}))
"""
    env = dict(os.environ, PYTHONPATH=tree)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tree,
        check=False,
        env=env,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{stage} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


@click.command()
@click.option("--rows", default="100000,1000000", show_default=True, help="Sizes to run.")
@click.option("--profile", is_flag=True, help="Profile ingest and transform at the smallest size.")
@click.option(
    "--reference-tree",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="A checkout of an earlier commit (git worktree add DIR COMMIT): its ingest runs on "
    "the same files in this run, and the report gives the speed-up against it.",
)
@click.option(
    "--files",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Write each log as this many CSV files of consecutive rows (a worker reads a file).",
)
@click.option(
    "--beam-workers",
    default="",
    help="Numbers of local Beam workers to run ingest and transform with, e.g. 1,2 "
    "(--direct_num_workers); empty: as the pipeline picks them.",
)
@click.option("--out", default=None, help="Also write the report (Markdown) here.")
def main(
    rows: str,
    profile: bool,
    reference_tree: str | None,
    files: int,
    beam_workers: str,
    out: str | None,
) -> None:
    from reports import print_and_save, reference_tree_argument

    load = f"{os.getloadavg()[0]:.2f}"
    sizes = sorted(int(r) for r in rows.split(","))
    workers = [int(w) for w in beam_workers.split(",") if w.strip()] or [None]
    if any(w is not None and w < 1 for w in workers):
        raise click.BadParameter(f"worker counts must be at least 1, got {beam_workers}")

    def named(step: str, count: int | None) -> str:
        return step if count is None else f"{step}, {count} worker{'s' if count > 1 else ''}"

    ingest, transform = named("ingest", workers[0]), named("transform", workers[0])
    results = []
    profiles = []
    for size in sizes:
        work = tempfile.mkdtemp(prefix=f"mlpr-ingest-{size}-")
        t0 = time.perf_counter()
        whole = os.path.join(work, "log.csv")
        write_log(whole, size)
        source = split_log(whole, size, files) if files > 1 else whole
        megabytes = sum(os.path.getsize(p) for p in glob.glob(source)) / 2**20
        click.echo(
            f"[{size}] wrote {megabytes:.0f} MiB in {files} file(s) in "
            f"{time.perf_counter() - t0:.0f} s",
            err=True,
        )
        steps = {}
        stages = [("floor", "floor", ROOT, work, ())]
        for count in workers:
            args = () if count is None else (f"--direct_num_workers={count}",)
            folder = work if count is None else f"{work}-w{count}"
            stages += [
                (named("ingest", count), "ingest", ROOT, folder, args),
                (named("transform", count), "transform", ROOT, folder, args),
            ]
        if reference_tree:
            stages += [
                ("reference ingest", "ingest", reference_tree, work + "-ref", ()),
                ("reference transform", "transform", reference_tree, work + "-ref", ()),
            ]
        for name, stage, tree, folder, args in stages:
            result = _child(stage, source, folder, False, tree, args)
            steps[name] = result
            click.echo(
                f"[{size}] {name}: {result['seconds']:.0f} s ({result['cpu']:.0f} s CPU), "
                f"{result['rows'] / result['seconds']:.0f} rows/s, peak {result['peak_mb']:.0f} "
                f"MiB (a worker {result['worker_peak_mb']:.0f}, together {result['total_peak_mb']:.0f})",
                err=True,
            )
        results.append((size, steps))
        if profile and size == sizes[0]:  # a separate run: profiling slows the timed one down
            for stage in ("ingest", "transform"):
                found = _child(stage, source, work + "-profile", True)["profile"]
                profiles.append((stage, found))

    command = f"    .venv/bin/python benchmarks/ingest_throughput.py --rows {rows}"
    if files > 1:
        command += f" --files {files}"
    if beam_workers:
        command += f" --beam-workers {beam_workers}"
    if profile:
        command += " --profile"
    if reference_tree:
        command += reference_tree_argument(reference_tree)
    lines = [
        f"# Ingest + transform throughput, local Beam runner, {os.cpu_count()} CPUs",
        "",
        command,
        "",
        f"Load average (1 min) when the run started, the other jobs on this machine: {load}",
        "",
        "| rows | step | seconds | rows/s | CPU s | peak MiB | a worker's peak MiB | all "
        "together MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, steps in results:
        for stage, r in steps.items():
            lines.append(
                f"| {size:,} | {stage} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | "
                f"{r['cpu']:.1f} | {r['peak_mb']:.0f} | {r['worker_peak_mb']:.0f} | "
                f"{r['total_peak_mb']:.0f} |"
            )
        for count in workers:
            both = named("ingest + transform", count)
            total = steps[named("ingest", count)]["seconds"]
            total += steps[named("transform", count)]["seconds"]
            lines.append(f"| {size:,} | {both} | {total:.1f} | {size / total:,.0f} | | | | |")
        if "reference transform" in steps:
            old = steps["reference ingest"]["seconds"] + steps["reference transform"]["seconds"]
            lines.append(
                f"| {size:,} | reference ingest + transform | {old:.1f} | {size / old:,.0f} | | | | |"
            )
    if len(workers) > 1:
        lines += [
            "",
            f"Speed against {workers[0]} worker(s) in this run (its seconds over these):",
            "",
        ]
        for size, steps in results:
            for count in workers[1:]:
                parts = []
                for step in ("ingest", "transform"):
                    base, here = steps[named(step, workers[0])], steps[named(step, count)]
                    parts.append(f"{step} {base['seconds'] / here['seconds']:.2f}x")
                base = steps[ingest]["seconds"] + steps[transform]["seconds"]
                here = steps[named("ingest", count)]["seconds"]
                here += steps[named("transform", count)]["seconds"]
                parts.append(f"both {base / here:.2f}x")
                lines.append(f"- {size:,} rows, {count} workers: " + ", ".join(parts))
    lines += ["", "Ratios in this run (seconds of ingest over seconds of the other):", ""]
    for size, steps in results:
        seconds = steps[ingest]["seconds"]
        parts = [f"{seconds / steps['floor']['seconds']:.1f}x the pyarrow floor"]
        if "reference ingest" in steps:
            old = steps["reference ingest"]["seconds"]
            parts.append(f"{old / seconds:.1f}x faster than the reference tree's ingest")
        lines.append(f"- {size:,} rows: {ingest} takes " + ", ".join(parts))
        if "reference transform" in steps:
            new = seconds + steps[transform]["seconds"]
            old = steps["reference ingest"]["seconds"] + steps["reference transform"]["seconds"]
            lines.append(
                f"- {size:,} rows: ingest + transform {old / new:.1f}x faster than the reference "
                f"tree's (transform alone {steps['reference transform']['seconds'] / steps[transform]['seconds']:.1f}x)"
            )
    if len(results) > 1:
        (small, a), (large, b) = results[0], results[-1]
        lines += [
            "",
            f"Peak memory from {small:,} to {large:,} rows ({large / small:.0f}x): "
            + ", ".join(
                f"{stage} {a[stage]['peak_mb']:.0f} -> {b[stage]['peak_mb']:.0f} MiB "
                f"({b[stage]['peak_mb'] / a[stage]['peak_mb']:.2f}x)"
                for stage in a
                if stage != "floor"
            ),
        ]
    goal = 20_000
    largest, steps = results[-1]
    seconds, best = min(
        (steps[named("ingest", w)]["seconds"] + steps[named("transform", w)]["seconds"], w)
        for w in workers
    )
    setting = "" if best is None else f" ({best} worker{'s' if best > 1 else ''})"
    rate = largest / seconds
    lines += [
        "",
        f"Goal: ingest + transform >= {goal:,} rows/s at {largest:,} rows{setting}: "
        + ("met" if rate >= goal else f"MISSED ({rate:,.0f} rows/s)"),
    ]
    for stage, text in profiles:
        lines += [
            "",
            f"## Where {stage} spends its time (cProfile, by own time)",
            "",
            "```",
            text.strip(),
            "```",
        ]
    report = "\n".join(lines) + "\n"
    print_and_save(report, out)


if __name__ == "__main__":
    main()
