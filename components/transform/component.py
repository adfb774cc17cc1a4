"""Kubeflow component: tensorflow-transform over the ingested splits."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def transform(
    examples: Input[Dataset],
    transform_graph: Output[Model],
    transformed_examples: Output[Dataset],
    beam_pipeline_args: list = [],  # noqa: B006 (kfp parameters declare defaults this way)
):
    """Z-scores the ranking features and builds vocabularies with training-split statistics.

    The statistics (means, standard deviations, vocabularies of product type, brand, color and
    gender) are computed on the train split only and applied to every split. The transform
    graph is exported into the serving model, so serving applies exactly the same
    preprocessing.

    Args:
        examples: the ingest output (train/eval/test Parquet splits and the schema), read as
            Arrow record batches.
        transform_graph: the tensorflow-transform output directory (transform_fn,
            transformed_metadata) plus the raw schema.
        transformed_examples: transformed tf.Examples per split.
        beam_pipeline_args: Apache Beam options, e.g. ["--runner=DataflowRunner", ...];
            empty runs Beam locally.
    """
    from components.step_log import quiet

    quiet()  # before TensorFlow loads (components/step_log.py)
    from components.lifeline import follow_runner

    follow_runner()  # a local run's step ends with the run (components/lifeline.py)

    import os
    import tempfile

    from components.transform.transform import run_transform

    run_transform(
        examples.path,
        transform_graph.path,
        transformed_examples.path,
        beam_args=beam_pipeline_args,
        temp_dir=os.path.join(tempfile.mkdtemp(prefix="tft-"), "tmp"),
    )
