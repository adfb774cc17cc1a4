"""The push component: its compiled interface, and its body run on local artifacts."""

import json
import os

import yaml
from kfp import compiler, dsl

from components.push.component import push
from contract import layout


def test_compiles_with_named_outputs(tmp_path):
    @dsl.pipeline(name="push-only")
    def pipeline(model_base: str):
        model = dsl.importer(artifact_uri="/tmp/model", artifact_class=dsl.Model)
        blessing = dsl.importer(artifact_uri="/tmp/blessing", artifact_class=dsl.Artifact)
        push(model=model.output, blessing=blessing.output, model_base=model_base)

    path = str(tmp_path / "pipeline.yaml")
    compiler.Compiler().compile(pipeline, path)
    with open(path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    component = spec["components"]["comp-push"]
    outputs = component["outputDefinitions"]["parameters"]
    assert {name: o["parameterType"] for name, o in outputs.items()} == {
        "pushed": "BOOLEAN",
        "pushed_uri": "STRING",
        "reason": "STRING",
    }
    inputs = component["inputDefinitions"]
    assert set(inputs["artifacts"]) == {"model", "blessing"}
    assert set(component["outputDefinitions"]["artifacts"]) == {"serving_config"}
    assert inputs["parameters"]["serving_batching"]["defaultValue"] == "gpu"
    assert inputs["parameters"]["model_name"]["defaultValue"] == "mlpr"
    executor = spec["deploymentSpec"]["executors"]["exec-push"]["container"]
    assert executor["image"].endswith("mlpr-components:0.1.0")
    assert not any("pip install" in part for part in executor["command"])


def write_blessing(path: str, blessed: bool) -> dsl.Artifact:
    os.makedirs(path)
    with open(os.path.join(path, layout.BLESSING_FILE), "w", encoding="utf-8") as f:
        json.dump({"blessed": blessed, "reasons": ["by hand"], "checks": []}, f)
    return dsl.Artifact(uri=path)


def test_body_pushes_only_when_blessed(tmp_path):
    model_dir = tmp_path / "model"
    (model_dir / layout.SAVED_MODEL_DIR).mkdir(parents=True)
    (model_dir / layout.SAVED_MODEL_DIR / "saved_model.pb").write_bytes(b"graph")
    base = str(tmp_path / "serving")

    refused = push.python_func(
        model=dsl.Model(uri=str(model_dir)),
        blessing=write_blessing(str(tmp_path / "no"), blessed=False),
        serving_config=dsl.Artifact(uri=str(tmp_path / "config_refused")),
        model_base=base,
    )
    assert (refused.pushed, refused.pushed_uri) == (False, "")
    assert "by hand" in refused.reason
    assert not os.path.exists(base)

    pushed = push.python_func(
        model=dsl.Model(uri=str(model_dir)),
        blessing=write_blessing(str(tmp_path / "yes"), blessed=True),
        serving_config=dsl.Artifact(uri=str(tmp_path / "config")),
        model_base=base,
        model_name="ranker",
        serving_base="/srv",
        serving_batching="cpu",
    )
    assert (pushed.pushed, pushed.pushed_uri) == (True, os.path.join(base, "ranker", "1"))
    # The config files of the push are the step's artifact too, and nothing for a refusal.
    assert os.listdir(tmp_path / "config_refused") == []
    assert sorted(os.listdir(tmp_path / "config")) == [
        "batching.config",
        "models.config",
        "monitoring.config",
    ]
    models = (tmp_path / "config" / "models.config").read_text()
    assert 'name: "ranker"' in models and 'base_path: "/srv/ranker"' in models
    assert models == (tmp_path / "serving" / "tfserving" / "models.config").read_text()
