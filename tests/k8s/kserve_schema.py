"""KServe's InferenceService schema and TF Serving runtime, as the tests of k8s/kserve use them.

The two files in tests/k8s/kserve/ come from a KServe release, unchanged but for what this
module removes (tests/k8s/kserve/README.md says which release). To take them from another
release, with a checkout of github.com/kserve/kserve at its tag:

    .venv/bin/python tests/k8s/kserve_schema.py PATH/TO/kserve --version v0.20.0 --commit SHA

- `inferenceservice.schema.json`: the `openAPIV3Schema` of the v1beta1 version of the
  InferenceService CRD (config/crd/full/serving.kserve.io_inferenceservices.yaml), without the
  parts k8s/kserve does not use (REMOVED), which a manifest then may not have either.
- `kserve-tensorflow-serving.yaml`: the ClusterServingRuntime an InferenceService of model
  format tensorflow runs on, as KServe installs it (config/runtimes rendered by kustomize, which
  gives the runtime its image).

The API server checks a custom resource against its CRD's schema and, with kubectl's default
strict field validation, refuses a field the schema does not declare. `validator()` does both
with the jsonschema library: `strict()` marks every object of the schema closed
(`additionalProperties: false`) unless it declares its extra keys or preserves unknown fields.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import subprocess
import sys

import jsonschema
import yaml

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kserve")
SCHEMA_FILE = os.path.join(HERE, "inferenceservice.schema.json")
RUNTIME_FILE = os.path.join(HERE, "kserve-tensorflow-serving.yaml")
CRD_PATH = "config/crd/full/serving.kserve.io_inferenceservices.yaml"
RUNTIMES_PATH = "config/runtimes"
RUNTIME_NAME = "kserve-tensorflow-serving"
API_VERSION = "v1beta1"
# Parts of the schema k8s/kserve does not use: the status the controller writes, and the
# components other than the predictor (a transformer, an explainer, the canary predictors of
# KServe's Standard deployment mode; this project's canary is the predictor's
# canaryTrafficPercent).
REMOVED = ("status", "spec.explainer", "spec.transformer", "spec.canary")


def extract_schema(crd: dict) -> dict:
    """The v1beta1 openAPIV3Schema of the InferenceService CRD `crd`, without REMOVED."""
    if crd.get("kind") != "CustomResourceDefinition" or crd["spec"]["names"]["kind"] != (
        "InferenceService"
    ):
        raise ValueError("not the InferenceService CustomResourceDefinition")
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == API_VERSION]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    for dotted in REMOVED:
        *parents, name = dotted.split(".")
        node = schema
        for parent in parents:
            node = node["properties"][parent]
        del node["properties"][name]
    return schema


def strict(schema: dict) -> dict:
    """`schema` with every object that lists its properties closed to other keys, as the API
    server's strict field validation treats it."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def vendored() -> dict:
    with open(SCHEMA_FILE, encoding="utf-8") as fh:
        return json.load(fh)


@functools.cache
def validator() -> jsonschema.Draft4Validator:
    """Validates an InferenceService (a dict) against KServe's schema, unknown fields refused.
    (Structural CRD schemas are OpenAPI v3.0 schemas: JSON Schema draft 4 as far as
    validation goes.)"""
    schema = strict(vendored()["openAPIV3Schema"])
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def errors(document: dict) -> list[str]:
    """Every way `document` breaks the schema, as `path: message`; empty when it is valid."""
    found = sorted(validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in found]


@functools.cache
def runtime() -> dict:
    with open(RUNTIME_FILE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _rendered_runtime(checkout: str, kubectl: str) -> dict:
    done = subprocess.run(
        [kubectl, "kustomize", os.path.join(checkout, RUNTIMES_PATH)],
        capture_output=True,
        text=True,
        check=True,
    )
    (found,) = [
        doc
        for doc in yaml.safe_load_all(done.stdout)
        if doc and doc["metadata"]["name"] == RUNTIME_NAME
    ]
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", help="a checkout of github.com/kserve/kserve at a release tag")
    parser.add_argument("--version", required=True, help="the release tag, e.g. v0.20.0")
    parser.add_argument("--commit", required=True, help="the commit the tag names")
    parser.add_argument(
        "--kubectl", default=os.path.join(os.path.dirname(sys.executable), "kubectl")
    )
    args = parser.parse_args(argv)
    with open(os.path.join(args.checkout, CRD_PATH), encoding="utf-8") as fh:
        crd = yaml.safe_load(fh)
    vendored_schema = {
        "kserve": {
            "version": args.version,
            "commit": args.commit,
            "source": f"{CRD_PATH}: spec.versions[name={API_VERSION}].schema.openAPIV3Schema",
            "removed": list(REMOVED),
        },
        "openAPIV3Schema": extract_schema(crd),
    }
    with open(SCHEMA_FILE, "w", encoding="utf-8") as fh:
        json.dump(vendored_schema, fh, separators=(",", ":"), sort_keys=True)
        fh.write("\n")
    header = (
        f"# KServe {args.version} ({args.commit}): the {RUNTIME_NAME} ClusterServingRuntime\n"
        f"# of {RUNTIMES_PATH}, rendered with kustomize as KServe installs it.\n"
        "# Written by tests/k8s/kserve_schema.py; do not edit.\n"
    )
    with open(RUNTIME_FILE, "w", encoding="utf-8") as fh:
        fh.write(
            header + yaml.safe_dump(_rendered_runtime(args.checkout, args.kubectl), sort_keys=False)
        )
    print(f"wrote {SCHEMA_FILE}\nwrote {RUNTIME_FILE}")


if __name__ == "__main__":
    main()
