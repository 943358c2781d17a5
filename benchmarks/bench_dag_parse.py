"""Parse cost of the DAG files: importing each one against a bare import of Airflow.

Each figure is one fresh interpreter (what a DAG processor pays per file the first time),
repeated; the rows are interleaved so that drift hits every row alike. The table shows
medians of the wall time and of the CPU time (user + system, `time.process_time`) of the
import, and the ratio of each DAG file to the bare import measured in the same rounds: the
median of the round-by-round ratios (on a shared, busy machine the wall time swings with
the load, the CPU time much less: read the CPU ratio first). The baseline is
`import airflow.sdk` on Airflow 3 (goal: each DAG file at most 1.2x) and `import airflow` +
the TaskFlow decorators on Airflow 2.11.

    PYTHONPATH=. .local/venv/bin/python benchmarks/bench_dag_parse.py [--repeat 9]
    PYTHONPATH=. .local/airflow3/venv/bin/python benchmarks/bench_dag_parse.py

The last line is the same figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
GOAL_AIRFLOW_3 = 1.2

_TIMER = """
import time, importlib.util, sys
_wall, _cpu = time.perf_counter(), time.process_time()
{body}
print(time.perf_counter() - _wall, time.process_time() - _cpu)
"""
_LOAD_FILE = """
spec = importlib.util.spec_from_file_location("dag_under_test", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
"""


def _airflow_3() -> bool:
    import airflow

    return int(airflow.__version__.split(".")[0]) >= 3


def _baseline_body() -> str:
    if _airflow_3():
        return "import airflow.sdk"
    return "import airflow\nfrom airflow.decorators import dag, task, task_group"


def _seconds(body: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of `body` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _TIMER.format(body=body)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"bench_dag_parse: this import failed:\n{body}\n{done.stderr[-3000:]}")
    wall, cpu = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def _median_ratio(values: list[float], base: list[float]) -> float:
    return statistics.median(value / floor for value, floor in zip(values, base, strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="rounds (default 9)")
    args = parser.parse_args(argv)
    import airflow

    bodies = {"baseline": _baseline_body()}
    bodies.update({path.name: _LOAD_FILE.format(path=str(path)) for path in DAG_FILES})
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "ML_PIPELINE_HOME": home,
        }
        for body in bodies.values():  # warm the file cache and write the .pyc files
            _seconds(body, env)
        rows: dict[str, list[tuple[float, float]]] = {name: [] for name in bodies}
        for _ in range(args.repeat):
            for name, body in bodies.items():
                rows[name].append(_seconds(body, env))

    base_wall = [wall for wall, _ in rows["baseline"]]
    base_cpu = [cpu for _, cpu in rows["baseline"]]
    print(f"Airflow {airflow.__version__}, Python {sys.version.split()[0]}, {args.repeat} rounds")
    print(
        f"{'import':<36} {'wall s':>7} {'min':>6} {'max':>6} {'ratio':>6} {'cpu s':>7} {'ratio':>6}"
    )
    result = {
        "airflow": airflow.__version__,
        "baseline": bodies["baseline"],
        "repeat": args.repeat,
        "rows": {},
    }
    for name, values in rows.items():
        walls = [wall for wall, _ in values]
        cpus = [cpu for _, cpu in values]
        figures = {
            "wall_median_s": statistics.median(walls),
            "wall_ratio": _median_ratio(walls, base_wall),
            "cpu_median_s": statistics.median(cpus),
            "cpu_ratio": _median_ratio(cpus, base_cpu),
        }
        label = bodies["baseline"].replace("\n", "; ") if name == "baseline" else name
        print(
            f"{label[:36]:<36} {figures['wall_median_s']:7.3f} {min(walls):6.2f} "
            f"{max(walls):6.2f} {figures['wall_ratio']:6.2f} {figures['cpu_median_s']:7.3f} "
            f"{figures['cpu_ratio']:6.2f}"
        )
        result["rows"][name] = figures
    if _airflow_3():
        worst = max(v["cpu_ratio"] for k, v in result["rows"].items() if k != "baseline")
        verdict = "met" if worst <= GOAL_AIRFLOW_3 else "NOT met"
        print(f"goal: each DAG file <= {GOAL_AIRFLOW_3}x the bare import (cpu): {verdict}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
