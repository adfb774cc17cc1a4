"""Upload the compiled pipeline to Kubeflow Pipelines and start a run with parameters.

    .venv/bin/python k8s/run_pipeline.py --host http://localhost:8080 \\
        --namespace kubeflow-user-example-com --param max_epochs=4 --wait

Every --param NAME=VALUE is checked against the package's parameters and converted to the
declared type (numbers, true/false, JSON for lists and dicts) before the server is
contacted; --dry-run prints what would be submitted and stops there. model_base defaults
to the model repository on the pipeline's volume (/mnt/mlpr/serving), where the TF Serving
Deployment of k8s/overlays reads it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
from typing import Any

import click
import yaml

from components import resources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PACKAGE = os.path.join(ROOT, "pipeline.yaml")
DEFAULT_ARGUMENTS = {"model_base": resources.DEFAULT_MODEL_BASE}
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
_EXPECTED = {
    "NUMBER_INTEGER": "an integer",
    "NUMBER_DOUBLE": "a number",
    "BOOLEAN": "true or false",
    "LIST": "a JSON list",
    "STRUCT": "a JSON object",
}


def pipeline_spec(package_path: str) -> dict:
    """The pipeline spec, the package's first YAML document (the Kubernetes platform spec,
    when there is one, follows as a second document)."""
    with open(package_path, encoding="utf-8") as fh:
        return next(yaml.safe_load_all(fh))


def pipeline_parameters(package_path: str) -> dict[str, dict]:
    """The pipeline's parameters, name -> input definition (parameterType, defaultValue...)."""
    return pipeline_spec(package_path)["root"]["inputDefinitions"]["parameters"]


def pipeline_name(package_path: str) -> str:
    return pipeline_spec(package_path)["pipelineInfo"]["name"]


def parse_value(name: str, text: str, parameter_type: str) -> Any:
    """`text` as a value of the kfp parameter type; ValueError saying why it is not one."""
    try:
        if parameter_type == "STRING":
            return text
        if parameter_type == "NUMBER_INTEGER":
            return int(text)
        if parameter_type == "NUMBER_DOUBLE":
            return float(text)
        if parameter_type == "BOOLEAN":
            return _BOOLEANS[text.strip().lower()]
        if parameter_type in ("LIST", "STRUCT"):
            value = json.loads(text)
            expected = list if parameter_type == "LIST" else dict
            if not isinstance(value, expected):
                raise ValueError(f"got a JSON {type(value).__name__}")
            return value
    except (ValueError, KeyError) as err:
        raise ValueError(f"{name}={text!r} is not {_EXPECTED[parameter_type]} ({err})") from err
    raise ValueError(f"{name} has a parameter type this helper does not know: {parameter_type}")


def build_arguments(
    parameters: dict[str, dict],
    assignments: list[str],
    defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's arguments: `defaults` (for parameters the pipeline has), then each
    NAME=VALUE of `assignments` converted to the parameter's type. Raises ValueError for an
    unknown name, a malformed assignment, a value of the wrong type, or a required
    parameter left without a value."""
    arguments = {k: v for k, v in (defaults or {}).items() if k in parameters}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        if not sep or not name:
            raise ValueError(f"{assignment!r} is not NAME=VALUE")
        if name not in parameters:
            raise ValueError(
                f"the pipeline has no parameter {name!r}; it has: {', '.join(sorted(parameters))}"
            )
        arguments[name] = parse_value(name, text, parameters[name]["parameterType"])
    missing = [n for n, d in parameters.items() if not d.get("isOptional") and n not in arguments]
    if missing:
        raise ValueError(f"required parameter(s) without a value: {', '.join(sorted(missing))}")
    return arguments


def version_name(package_path: str, now: dt.datetime) -> str:
    """A pipeline version name unique per upload: the package's hash and the time."""
    with open(package_path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()[:12]
    return f"{pipeline_name(package_path)} {digest} {now:%Y-%m-%dT%H:%M:%SZ}"


def submit(
    client,
    package_path: str,
    experiment: str,
    run_name: str,
    arguments: dict[str, Any],
    enable_caching: bool | None,
    namespace: str | None,
):
    """Uploads the package (a new pipeline, or a new version of the one with its name) and
    starts a run of that version in `experiment`. Returns the run."""
    name = pipeline_name(package_path)
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        # A new pipeline comes with its first version, the package itself.
        pipeline_id = client.upload_pipeline(package_path, pipeline_name=name).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id, page_size=1).pipeline_versions
        version_id = versions[0].pipeline_version_id
    else:
        version = version_name(package_path, dt.datetime.now(dt.UTC))
        uploaded = client.upload_pipeline_version(package_path, version, pipeline_id=pipeline_id)
        version_id = uploaded.pipeline_version_id
    experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
    return client.run_pipeline(
        experiment_id=experiment_id,
        job_name=run_name,
        params=arguments,
        pipeline_id=pipeline_id,
        version_id=version_id,
        enable_caching=enable_caching,
    )


@click.command()
@click.option("--host", required=True, help="Kubeflow Pipelines API, e.g. http://localhost:8080.")
@click.option("--namespace", default=None, help="Kubeflow profile namespace of the run.")
@click.option(
    "--package",
    default=DEFAULT_PACKAGE,
    show_default=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The compiled pipeline (pipeline.py compile).",
)
@click.option("--experiment", default="mlpr", show_default=True)
@click.option("--run-name", default=None, help="Default: the pipeline's name and the time.")
@click.option(
    "--param", "assignments", multiple=True, metavar="NAME=VALUE", help="A run parameter."
)
@click.option(
    "--cache/--no-cache",
    default=None,
    help="Force caching on or off for every step (default: each step's own setting).",
)
@click.option("--token", envvar="KFP_TOKEN", default=None, help="Bearer token (env KFP_TOKEN).")
@click.option(
    "--wait", is_flag=True, help="Wait for the run to finish and exit 1 unless it succeeded."
)
@click.option("--timeout", default=6 * 3600, show_default=True, help="Seconds --wait waits.")
@click.option("--dry-run", is_flag=True, help="Print the run's arguments and stop.")
def main(
    host: str,
    namespace: str | None,
    package: str,
    experiment: str,
    run_name: str | None,
    assignments: tuple[str, ...],
    cache: bool | None,
    token: str | None,
    wait: bool,
    timeout: int,
    dry_run: bool,
) -> None:
    """Upload the compiled MLPR pipeline to Kubeflow Pipelines and start a run."""
    try:
        arguments = build_arguments(
            pipeline_parameters(package), list(assignments), DEFAULT_ARGUMENTS
        )
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    click.echo("Arguments: " + json.dumps(arguments, sort_keys=True))
    if dry_run:
        return
    import kfp

    client = kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)
    run_name = run_name or f"{pipeline_name(package)} {dt.datetime.now():%Y-%m-%d %H:%M}"
    run = submit(client, package, experiment, run_name, arguments, cache, namespace)
    click.echo(f"Run {run_name!r} started: {host.rstrip('/')}/#/runs/details/{run.run_id}")
    if wait:
        done = client.wait_for_run_completion(run.run_id, timeout=timeout)
        click.echo(f"Run finished: {done.state}")
        if done.state != "SUCCEEDED":
            sys.exit(1)


if __name__ == "__main__":
    main()
