"""The shape of `ml_model_deployment_advanced`: the seed's ids and groups, the branch
targets, the trigger rules, and the order of the groups in the Graph view."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"

GROUPS = {
    "preparacion_datos": ["descargar_datos", "validar_datos", "preprocesar_datos", "dividir_datos"],
    "entrenamiento_evaluacion": [
        "iniciar_experimento",
        "entrenar_modelo",
        "evaluar_modelo",
        "registrar_mlflow",
    ],
    "despliegue_modelo": [
        "generar_artefactos",
        "desplegar_api",
        "pruebas_api",
        "revertir_despliegue",
    ],
    "visualizacion_monitoreo": ["configurar_monitoreo", "configurar_dashboards"],
}
TOP_LEVEL = [
    "esperar_datos",
    "decidir_despliegue",
    "notificar_modelo_rechazado",
    "notificar_despliegue_exitoso",
    "notificar_fallo",
    "fin",
]
# The Graph view, left to right (a group stands for all of its tasks).
ORDER = [
    "esperar_datos",
    "preparacion_datos",
    "entrenamiento_evaluacion",
    "decidir_despliegue",
    "despliegue_modelo",
    "visualizacion_monitoreo",
    "notificaciones",
    "fin",
]


@pytest.fixture(scope="module")
def dag(airflow_db):
    from include.ml_pipeline.orchestration.compat import dag_bag

    bag = dag_bag(str(DAGS / "ml_model_deployment_advanced.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["ml_model_deployment_advanced"]


def _stage(task) -> str:
    group = task.task_group
    return group.group_id if group is not None and group.group_id else task.task_id


def test_every_id_of_the_diagram_is_there_in_its_group(dag):
    expected = {f"{g}.{t}" for g, tasks in GROUPS.items() for t in tasks} | set(TOP_LEVEL)
    assert set(dag.task_ids) == expected
    for group, tasks in GROUPS.items():
        assert dag.task_group_dict[group].children.keys() == {f"{group}.{t}" for t in tasks}
    # notificaciones keeps the seed's task ids (no group prefix).
    notificaciones = dag.task_group_dict["notificaciones"]
    assert set(notificaciones.children) == {"notificar_despliegue_exitoso", "notificar_fallo"}


def test_branch_targets_exist_and_are_the_two_paths(dag):
    branch = dag.get_task("decidir_despliegue")
    assert branch.downstream_task_ids == {
        "despliegue_modelo.generar_artefactos",
        "notificar_modelo_rechazado",
    }
    source = (DAGS / "ml_model_deployment_advanced.py").read_text()
    for target in branch.downstream_task_ids:
        assert f'"{target}"' in source  # the ids the branch returns


def test_trigger_rules(dag):
    rules = {t.task_id: getattr(t.trigger_rule, "value", t.trigger_rule) for t in dag.tasks}
    assert rules.pop("despliegue_modelo.revertir_despliegue") == "one_failed"
    assert rules.pop("notificar_fallo") == "one_failed"
    assert rules.pop("fin") == "none_failed_min_one_success"
    assert set(rules.values()) == {"all_success"}
    # The watcher needs no edge from every task: it hangs off the two ends of the paths.
    assert dag.get_task("notificar_fallo").upstream_task_ids == {
        "notificar_despliegue_exitoso",
        "notificar_modelo_rechazado",
    }
    assert len(dag.get_task("fin").upstream_task_ids) == 3
    assert dag.get_task("despliegue_modelo.revertir_despliegue").retries == 0


def test_the_mlflow_experiment_starts_only_once_the_split_exists(dag):
    # Data that fails at the door never opens an MLflow parent run (nor pays for it).
    assert dag.get_task("entrenamiento_evaluacion.iniciar_experimento").upstream_task_ids == {
        "preparacion_datos.dividir_datos"
    }


def test_groups_follow_the_diagram_left_to_right(dag):
    position = {name: i for i, name in enumerate(ORDER)}
    rejected = "notificar_modelo_rechazado"
    for task in dag.tasks:
        here = _stage(task)
        for downstream in task.downstream_list:
            there = _stage(downstream)
            if rejected in (task.task_id, downstream.task_id):
                continue  # the rejected path sits beside despliegue_modelo
            assert position[here] <= position[there], f"{task.task_id} -> {downstream.task_id}"


def test_xcom_edges_only_join_neighbouring_groups(dag):
    """Each group hands the next one payload: no edge skips a group."""
    position = {name: i for i, name in enumerate(ORDER)}
    # The rejected path runs beside despliegue_modelo and visualizacion_monitoreo.
    position["notificar_modelo_rechazado"] = position["despliegue_modelo"]
    for task in dag.tasks:
        if task.task_id == "notificar_modelo_rechazado":
            continue
        for downstream in task.downstream_list:
            here, there = _stage(task), _stage(downstream)
            assert position[there] - position[here] <= 1 or downstream.task_id == "fin", (
                f"{task.task_id} -> {downstream.task_id} skips a group"
            )


def test_docs_cover_every_group_and_the_params(dag):
    for name in [*ORDER, *TOP_LEVEL]:
        assert f"`{name}`" in dag.doc_md
    assert "**Params**" in dag.doc_md
    for task in dag.tasks:
        if task.task_id != "fin":
            # a mapped task keeps its docstring on the callable only
            doc = task.doc_md or task.doc or getattr(task, "python_callable", None).__doc__
            assert doc, f"{task.task_id} has no docstring"


def test_dag_files_only_wire_tasks():
    """No helper functions and no heavy imports at the top of a DAG file."""
    import ast

    for path in DAGS.glob("*.py"):
        tree = ast.parse(path.read_text())
        top_functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert len(top_functions) == 1, f"{path.name}: helpers {top_functions}"
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                module = getattr(node, "module", None) or node.names[0].name
                assert module.split(".")[0] not in {"mlflow", "sklearn", "pandas", "numpy"}, (
                    f"{path.name} imports {module} at parse time"
                )
