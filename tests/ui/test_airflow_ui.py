"""The Airflow UI of `make ui` and the MLflow UI, checked in a real browser, on either line
(2.11: the webserver's FAB login; 3.x: the api-server's React UI, the simple auth manager).

After one `make run` in a temporary home: the login page, the Graph view of
`ml_model_deployment_advanced` with every group and task id of the diagram, the finished
run with its task states (as the runner recorded them), the registered model with its
`champion` alias in the MLflow UI, and `make stop` freeing the ports.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote


def _airflow_major() -> int:
    from importlib.metadata import version

    return int(version("apache-airflow").split(".", 1)[0])


AIRFLOW_3 = _airflow_major() >= 3

ROOT = Path(__file__).resolve().parents[2]

DAG_ID = "ml_model_deployment_advanced"
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
    # prefix_group_id=False: the seed's task ids, without the group's name.
    "notificaciones": ["notificar_despliegue_exitoso", "notificar_fallo"],
}
TOP_LEVEL = ["esperar_datos", "decidir_despliegue", "notificar_modelo_rechazado", "fin"]
FINISHED = {"success", "skipped", "failed", "upstream_failed", "removed"}


def _expected_ids() -> set[str]:
    ids = set(GROUPS) | set(TOP_LEVEL)
    for group, tasks in GROUPS.items():
        prefix = "" if group == "notificaciones" else f"{group}."
        ids |= {prefix + task for task in tasks}
    return ids


def _open_graph(page, stack, run_id: str | None = None) -> dict[str, list[str]]:
    """Open the Graph view (of `run_id` if given) with every group expanded; returns
    {node id: its lines of text} for the task and group nodes (datasets left out)."""
    if AIRFLOW_3:  # the React UI of the api-server: the graph is a view of the DAG page
        url = f"{stack.ui_url}/dags/{DAG_ID}"
        if run_id:
            url += f"/runs/{quote(run_id, safe='')}"
        _load_graph_3(page, url, stack.home)
    else:
        url = f"{stack.ui_url}/dags/{DAG_ID}/grid?tab=graph"
        if run_id:
            url += f"&dag_run_id={quote(run_id)}"
        page.goto(url)
    nodes = page.locator(".react-flow__node")
    nodes.first.wait_for()
    expand = page.get_by_role("button", name="Expand all task groups")
    expand.wait_for()
    if expand.is_enabled():  # disabled when the groups are open already (kept per browser)
        expand.click()
    # Only the nodes inside the viewport are drawn: fit the whole graph in it.
    page.locator('.react-flow__node[data-id="preparacion_datos.descargar_datos"]').wait_for()
    _fit_view(page)
    page.locator('.react-flow__node[data-id="fin"]').wait_for()
    if run_id:  # states arrive with the grid data
        _node_state(page, "fin", "success")
    found = {}
    for i in range(nodes.count()):
        node = nodes.nth(i)
        node_id = node.get_attribute("data-id")
        lines = [line.strip() for line in node.inner_text().splitlines() if line.strip()]
        if node_id and "Dataset" not in lines and "Asset" not in lines:
            found[node_id] = lines
    return found


def _load_graph_3(page, url: str, home: Path, loads: int = 3) -> None:
    """Open `url` of the 3.x UI in its graph view, until the graph's "Expand all task
    groups" shows (it is drawn once the DAG's structure has loaded).

    The view (grid or graph) is the browser's `default_dag_view` in local storage: set to
    the graph before loading, not toggled by a click. The page is loaded again (at most
    `loads` times in all) when the button is not there after 60 s: the UI asks for the
    structure 4 times in about 7 s and then gives up until a reload (seen by failing those
    requests here: an empty graph, no button); on a loaded CI machine that left the graph
    undrawn for 180 s (CI, 2026-12-04 and 12-05). A failure names what the browser met:
    responses >= 400, failed requests, console errors, and a screenshot of each load.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    met: list[str] = []

    def response(r) -> None:
        if r.status >= 400:
            met.append(f"{r.status} {r.request.method} {r.url}")

    def failed(r) -> None:
        if r.failure != "net::ERR_ABORTED":  # not a request a navigation cancelled
            met.append(f"failed ({r.failure}) {r.method} {r.url}")

    def console(m) -> None:
        if m.type == "error":
            met.append(f"console error: {m.text[:300]}")

    page.on("response", response)
    page.on("requestfailed", failed)
    page.on("console", console)
    try:
        page.evaluate("localStorage.setItem('default_dag_view', JSON.stringify('graph'))")
        page.goto(url)
        expand = page.get_by_role("button", name="Expand all task groups")
        for load in range(1, loads + 1):
            try:
                expand.wait_for(timeout=60_000)
                return
            except PlaywrightTimeoutError:
                shot = home / "screenshots" / f"graph_not_drawn_{load}.png"
                shot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shot))
                met.append(f"load {load}: no 'Expand all task groups' in 60 s ({shot})")
                if load < loads:
                    page.reload()
        problems = "\n".join(met[-40:])
        raise AssertionError(f"the graph of {url} was not drawn in {loads} loads:\n{problems}")
    finally:
        page.remove_listener("response", response)
        page.remove_listener("requestfailed", failed)
        page.remove_listener("console", console)


def _node_state(page, node_id: str, state: str) -> None:
    """Wait until the node shows `state` (both UIs write it as a line of the node)."""
    page.locator(f'.react-flow__node[data-id="{node_id}"]', has_text=state).wait_for()


def _fit_view(page) -> None:
    page.get_by_role("button", name="Fit View" if AIRFLOW_3 else "fit view").click()


def _full_screen(page) -> None:
    """Hide the details panel so the graph takes the page."""
    name = "Collapse Details Panel" if AIRFLOW_3 else "Toggle full screen details"
    page.get_by_role("button", name=name).click()
    _fit_view(page)
    page.wait_for_timeout(500)


def _graph_clip(page) -> dict:
    """The box around every node of the graph, in page coordinates, with a margin."""
    boxes = [b for b in (n.bounding_box() for n in page.locator(".react-flow__node").all()) if b]
    left = min(b["x"] for b in boxes) - 24
    top = min(b["y"] for b in boxes) - 24
    right = max(b["x"] + b["width"] for b in boxes) + 24
    bottom = max(b["y"] + b["height"] for b in boxes) + 24
    return {
        "x": max(left, 0),
        "y": max(top, 0),
        "width": right - max(left, 0),
        "height": bottom - max(top, 0),
    }


def test_the_run_of_make_run_finished(stack):
    print(f"timings (s): {stack.started}")
    assert stack.summary["state"] == "success", stack.summary.get("failed_tasks")
    assert stack.summary["model"]["champion_after"], stack.summary["model"]


def test_graph_view_shows_every_group_and_task_of_the_diagram(page, stack, screenshot):
    found = _open_graph(page, stack)
    missing = _expected_ids() - set(found)
    assert not missing, f"not in the Graph view: {sorted(missing)}"
    # ... and nothing else than the DAG's tasks and groups (the REST API's list, same session).
    api = "api/v2" if AIRFLOW_3 else "api/v1"  # v2: the UI's session cookie authenticates
    response = page.request.get(f"{stack.ui_url}/{api}/dags/{DAG_ID}/tasks")
    assert response.ok, response.status
    task_ids = {t["task_id"] for t in response.json()["tasks"]}
    assert task_ids <= set(found), sorted(task_ids - set(found))
    assert set(found) - task_ids == set(GROUPS)
    for node_id, lines in found.items():  # each node shows its own name
        assert lines[0].split(" [")[0] == node_id.split(".")[-1], (node_id, lines)

    _full_screen(page)
    screenshot(page, "graph_view.png", _graph_clip(page), stack.home)


def test_the_finished_run_shows_its_task_states(page, stack, screenshot):
    summary = stack.summary
    run_id = summary["run_id"]
    found = _open_graph(page, stack, run_id)
    expected = {}
    for key, state in summary["task_states"].items():
        task_id = key.split("[")[0]  # mapped: entrenar_modelo[0], [1] -> one node
        expected.setdefault(task_id, set()).add(state)
    shown = {}
    for node_id, lines in found.items():
        states = [line for line in lines[1:] if line in FINISHED or line == "running"]
        shown[node_id] = states[0] if states else None
    for task_id, states in expected.items():
        assert len(states) == 1, (task_id, states)
        assert shown.get(task_id) == states.pop(), (task_id, shown.get(task_id))
    assert shown["fin"] == "success"
    for group in GROUPS:
        assert shown[group] == "success", (group, shown[group])
    # The branch took the deployment path: the rejection and the rollback were skipped.
    assert shown["notificar_modelo_rechazado"] == "skipped"
    assert shown["despliegue_modelo.revertir_despliegue"] == "skipped"
    _full_screen(page)
    screenshot(page, "graph_view_run.png", _graph_clip(page), stack.home)

    # The run's Details tab: this run, manual (dag.test()), succeeded.
    if AIRFLOW_3:
        page.goto(f"{stack.ui_url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/details")
        state, run_type = "State", "Run Type"
    else:
        page.goto(f"{stack.ui_url}/dags/{DAG_ID}/grid?dag_run_id={quote(run_id)}&tab=details")
        state, run_type = "Status", "Run type"
    table = page.locator("table").filter(has_text="Run ID").first
    table.wait_for()
    rows = {}
    for row in table.locator("tr").all():
        key, _, value = row.inner_text().partition("\t")
        lines = [line.strip() for line in value.splitlines() if line.strip()]
        rows[key.strip()] = lines[0] if lines else ""  # 3.x: a "Copy" button follows
    assert rows["Run ID"] == run_id
    assert rows[state].lower() == "success"
    assert rows[run_type].lower() == "manual"


def test_mlflow_ui_shows_the_registered_model_with_its_champion_alias(browser, stack, screenshot):
    name = stack.summary["model"]["name"]
    version = stack.summary["model"]["champion_after"]
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(60_000)
    try:
        page = context.new_page()
        page.goto(f"{stack.mlflow_url}/#/models/{name}")
        row = page.get_by_role("row").filter(has_text=f"Version {version}")
        row.get_by_text("@ champion", exact=True).wait_for()
        screenshot(page, "mlflow_model.png", None, stack.home)
    finally:
        context.close()


def test_make_stop_ends_the_ui_and_frees_its_ports(stack, is_listening):
    assert is_listening(stack.ui_port)
    done = subprocess.run(
        [sys.executable, "-m", "devtools.services", "stop"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Stopped the Airflow UI" in done.stdout, done.stdout
    assert "Stopped the model API" in done.stdout, done.stdout
    deadline = time.monotonic() + 10
    ports = (stack.ui_port, stack.api_port)
    while time.monotonic() < deadline and any(is_listening(port) for port in ports):
        time.sleep(0.2)
    assert not is_listening(stack.ui_port)
    assert not is_listening(stack.api_port)
    from devtools import ui

    assert ui.status(stack.home) is None
