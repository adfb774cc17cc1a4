"""The evaluate component's compiled interface, wired to push the way the pipeline does."""

import yaml
from kfp import compiler, dsl

from components.evaluate.component import evaluate
from components.evaluate.kfp_outputs import CLASSIFICATION_SLOTS, slot_name
from components.push.component import push


def compile_to_spec(tmp_path) -> dict:
    @dsl.pipeline(name="evaluate-and-push")
    def pipeline(model_base: str):
        examples = dsl.importer(artifact_uri="/tmp/examples", artifact_class=dsl.Dataset)
        model = dsl.importer(artifact_uri="/tmp/model", artifact_class=dsl.Model)
        evaluated = evaluate(examples=examples.output, model=model.output, model_base=model_base)
        with dsl.If(evaluated.outputs["Output"] == True):  # noqa: E712 (a kfp condition)
            push(
                model=model.output,
                blessing=evaluated.outputs["blessing"],
                model_base=model_base,
            )

    path = str(tmp_path / "pipeline.yaml")
    compiler.Compiler().compile(pipeline, path)
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_interface(tmp_path):
    spec = compile_to_spec(tmp_path)
    component = spec["components"]["comp-evaluate"]
    inputs = component["inputDefinitions"]
    assert {n: a["artifactType"]["schemaTitle"] for n, a in inputs["artifacts"].items()} == {
        "examples": "system.Dataset",
        "model": "system.Model",
    }
    params = inputs["parameters"]
    assert {n: p["parameterType"] for n, p in params.items()} == {
        "model_base": "STRING",
        "model_name": "STRING",
        "auc_floor": "NUMBER_DOUBLE",
        "ndcg5_floor": "NUMBER_DOUBLE",
        "metric_floors": "STRUCT",
        "max_drop_vs_champion": "NUMBER_DOUBLE",
        "max_drop_by_metric": "STRUCT",
        "champion_significance": "STRING",
        "significance_task": "STRING",
        "significance_confidence": "NUMBER_DOUBLE",
        "force_push": "BOOLEAN",
        "relevance_encoder": "STRING",
        "reference_check": "STRING",
    }
    assert "isOptional" not in params["model_base"]
    assert params["auc_floor"]["defaultValue"] == 0.6  # the pipeline's
    assert params["metric_floors"]["defaultValue"] == {}
    assert params["champion_significance"]["defaultValue"] == "better"
    assert params["significance_task"]["defaultValue"] == ""  # the funnel's last task
    assert params["force_push"]["defaultValue"] is False
    assert params["reference_check"]["defaultValue"] == "gate"
    outputs = component["outputDefinitions"]
    # What the Kubeflow UI draws: scalar metrics, a ROC curve and confusion matrix per task
    # in positional slots (the tasks are the data's, the outputs fixed), and the HTML report.
    assert {n: a["artifactType"]["schemaTitle"] for n, a in outputs["artifacts"].items()} == {
        "metrics": "system.Metrics",
        "task_1_classification": "system.ClassificationMetrics",
        "task_2_classification": "system.ClassificationMetrics",
        "task_3_classification": "system.ClassificationMetrics",
        "task_4_classification": "system.ClassificationMetrics",
        "report": "system.HTML",
        "blessing": "system.Artifact",
    }
    slots = [n for n in outputs["artifacts"] if n.endswith("_classification")]
    assert slots == [slot_name(k) for k in range(1, CLASSIFICATION_SLOTS + 1)]
    assert outputs["parameters"]["Output"]["parameterType"] == "BOOLEAN"


def test_push_runs_under_the_blessed_condition(tmp_path):
    spec = compile_to_spec(tmp_path)
    condition = spec["root"]["dag"]["tasks"]["condition-1"]
    assert condition["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--evaluate-Output'] == true"
    )
    assert "push" in spec["components"]["comp-condition-1"]["dag"]["tasks"]


def test_body_imports_nothing_heavy_at_module_level(tmp_path):
    spec = compile_to_spec(tmp_path)
    container = spec["deploymentSpec"]["executors"]["exec-evaluate"]["container"]
    source = container["command"][-1]
    header = source.split("def evaluate(", 1)[0]
    assert "tensorflow" not in header and "components." not in header
    assert not any("pip install" in part for part in container["command"])
