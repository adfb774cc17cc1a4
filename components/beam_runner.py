"""One place that turns the pipeline's Beam options into a Beam pipeline."""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner


def make_pipeline(beam_args: Sequence[str] = ()) -> beam.Pipeline:
    """A Beam pipeline for `beam_args` (e.g. ["--runner=DataflowRunner", "--project=..."]).

    Without `--runner` it runs in-process on Beam's FnApiRunner, the engine the DirectRunner
    uses for batch jobs, named directly because DirectRunner first tries to download the
    Prism runner binary, which fails on machines without internet access.
    """
    options = PipelineOptions(list(beam_args))
    runner = None if options.view_as(StandardOptions).runner else FnApiRunner()
    return beam.Pipeline(runner=runner, options=options)
