"""Parse cost of the DAG files: importing each one against a bare import of Airflow.

Each figure is one fresh interpreter (what a DAG processor pays per file the first time),
repeated; the table shows medians and the ratio of each DAG file to the bare import,
measured in the same run. The baseline is `import airflow.sdk` on Airflow 3 and
`import airflow` + the TaskFlow decorators on Airflow 2.11.

    PYTHONPATH=. .local/venv/bin/python benchmarks/bench_dag_parse.py [--repeat 7]
    PYTHONPATH=. .local/af3/venv/bin/python benchmarks/bench_dag_parse.py
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

_TIMER = """
import time, importlib.util, sys
started = time.perf_counter()
{body}
print(time.perf_counter() - started)
"""
_LOAD_FILE = """
spec = importlib.util.spec_from_file_location("dag_under_test", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
"""


def _baseline_body() -> str:
    import airflow

    if int(airflow.__version__.split(".")[0]) >= 3:
        return "import airflow.sdk"
    return "import airflow\nfrom airflow.decorators import dag, task, task_group"


def _seconds(body: str, env: dict[str, str]) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _TIMER.format(body=body)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    import airflow

    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "ML_PIPELINE_HOME": home,
        }
        _seconds(_baseline_body(), env)  # warm the file cache and the .pyc files
        rows = {"baseline": []}
        rows.update({path.name: [] for path in DAG_FILES})
        for _ in range(args.repeat):  # interleaved, so drift hits every row alike
            rows["baseline"].append(_seconds(_baseline_body(), env))
            for path in DAG_FILES:
                rows[path.name].append(_seconds(_LOAD_FILE.format(path=str(path)), env))
    base = statistics.median(rows["baseline"])
    print(f"Airflow {airflow.__version__}, Python {sys.version.split()[0]}, {args.repeat} runs")
    print(f"{'import':<36} {'median s':>9} {'min s':>7} {'max s':>7} {'ratio':>6}")
    result = {"airflow": airflow.__version__, "baseline": _baseline_body(), "rows": {}}
    for name, values in rows.items():
        median = statistics.median(values)
        label = _baseline_body().replace("\n", "; ") if name == "baseline" else name
        print(
            f"{label[:36]:<36} {median:9.3f} {min(values):7.3f} {max(values):7.3f} "
            f"{median / base:6.2f}"
        )
        result["rows"][name] = {"median_s": median, "ratio": median / base}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
