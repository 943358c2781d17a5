"""Pipeline benchmark: wall time and peak memory of the whole deployment pipeline, three ways.

- **embedded**: `make run` (`python -m devtools.run_pipeline --rows N`) in a fresh
  `ML_PIPELINE_HOME`: `dag.test()` in one process; its DAG seconds and the per-task
  durations from its Airflow metadata DB (SQLite);
- **plain**: `benchmarks/plain_pipeline.py`, the same step functions called in sequence
  without Airflow's scheduler, metadata DB or task context;
- **distributed**: the CeleryExecutor cluster of `devtools/cluster/` (PostgreSQL, Redis, moto
  S3, MLflow server, model API service, scheduler, two workers): one deployment run of the
  same data with the DAG's default candidates, timed from trigger to success; the harness's
  start-up is reported separately; per-task durations and hosts from PostgreSQL.

Each variant runs as a child under `/usr/bin/time -v` (its "Maximum resident set size" is the
largest RSS of the child and every descendant it reaped) while a sampler polls the process
tree every 0.5 s with psutil, for each process's peak (daemons such as the model API and
PostgreSQL included: processes whose command line names the run's folder are followed
too) and the peak of the tree's summed RSS. The same generated data (`sample_data.
write_dataset`, seed 42) is used by all three. The model API each run starts is stopped
after it, and every run has its own folder and free port.

    PYTHONPATH=. .local/venv/bin/python benchmarks/bench_pipeline.py \
        --rows 100000,1000000 [--skip-distributed] [--repeat 3] [--plot-rows 10000,100000]

Prints a table per size with the ratios distributed / embedded (goal <= 1.1 at 1M) and
embedded / plain (goal <= 1.2), each measured in the same round (medians over --repeat),
every process's peak against the 4 GB goal, and where the time goes; writes the growth plot
`benchmarks/pipeline_growth.png` (wall time and peak memory against rows, embedded and
plain) and all numbers to `.local/bench_pipeline_results.json` unless --no-plot.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".local" / "venv" / "bin" / "python"
PLOT = ROOT / "benchmarks" / "pipeline_growth.png"
RESULTS = ROOT / ".local" / "bench_pipeline_results.json"
GB = 1024**3
MEMORY_GOAL = 4 * GB
DIST_GOAL, PLAIN_GOAL = 1.1, 1.2
#: Same for all three variants: the smoke test's 1-row p95 budget (default 50 ms) is
#: about the machine's load, not the pipeline's work; a loaded 2-core box misses it.
DEFAULT_CONF = ("latency_p95_budget_ms=2000",)


# --------------------------------------------------------------------------- measuring


class TreeSampler(threading.Thread):
    """Peak RSS of every process under `pid` (and of any process whose command line
    contains `marker`), polled every `interval` seconds."""

    def __init__(self, pid: int, marker: str | None = None, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.marker, self.interval = pid, marker, interval
        self.peaks: dict[int, dict] = {}
        self.tree_peak = 0
        self._done = threading.Event()

    def _processes(self):
        import psutil

        found = {}
        try:
            root = psutil.Process(self.pid)
            for proc in [root, *root.children(recursive=True)]:
                found[proc.pid] = proc
        except psutil.NoSuchProcess:
            pass
        if self.marker:
            for proc in psutil.process_iter(["cmdline"]):
                if self.marker in " ".join(proc.info["cmdline"] or ()):
                    found.setdefault(proc.pid, proc)
        return found

    def sample(self) -> None:
        import psutil

        total = 0
        for pid, proc in self._processes().items():
            try:
                rss = proc.memory_info().rss
                if pid not in self.peaks:
                    cmd = " ".join(proc.cmdline())
                    self.peaks[pid] = {"pid": pid, "name": label(cmd), "rss": 0}
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            total += rss
            self.peaks[pid]["rss"] = max(self.peaks[pid]["rss"], rss)
        self.tree_peak = max(self.tree_peak, total)

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


def label(cmd: str) -> str:
    """A short name for a process from its command line."""
    known = [
        ("celery", r"celery .*worker|airflow celery worker"),
        ("scheduler", r"airflow scheduler"),
        ("model-api", r"ml_pipeline\.serving|uvicorn"),
        ("mlflow", r"mlflow"),
        ("moto-s3", r"moto"),
        ("postgres", r"postgres"),
        ("redis", r"redis-server"),
        ("task", r"airflow tasks run"),
        ("run_pipeline", r"devtools\.run_pipeline"),
        ("plain_pipeline", r"plain_pipeline\.py"),
        ("cluster", r"bench_pipeline\.py _cluster"),
        ("time", r"^/usr/bin/time"),
    ]
    for name, pattern in known:
        if re.search(pattern, cmd):
            return name
    return (cmd.split() or ["?"])[0].rsplit("/", 1)[-1][:30]


def measured(
    cmd: list[str], env: dict, log: Path, marker: str | None = None, timeout: float = 7200
) -> dict:
    """Run `cmd` under /usr/bin/time -v with the tree sampler; wall seconds, exit code,
    the max RSS /usr/bin/time saw, each process's sampled peak, the tree's summed peak."""
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["/usr/bin/time", "-v", *cmd], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
        sampler = TreeSampler(proc.pid, marker)
        sampler.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        sampler.stop()
    wall = time.perf_counter() - started
    text = log.read_text(errors="replace")
    rss = re.findall(r"Maximum resident set size \(kbytes\): (\d+)", text)
    processes = sorted(sampler.peaks.values(), key=lambda p: -p["rss"])
    return {
        "wall": round(wall, 2),
        "rc": rc,
        "max_rss": int(rss[-1]) * 1024 if rss else None,
        "tree_peak": sampler.tree_peak,
        "processes": [p for p in processes if p["name"] != "time"],
        "log": str(log),
        "output": text,
    }


def by_name(processes: list[dict]) -> dict[str, int]:
    """The largest sampled peak per kind of process."""
    out: dict[str, int] = {}
    for proc in processes:
        out[proc["name"]] = max(out.get(proc["name"], 0), proc["rss"])
    return out


# --------------------------------------------------------------------------- the variants


def dataset(rows: int, cache: Path) -> Path:
    """The generated sample data at `rows` (written once per size)."""
    from include.ml_pipeline.data_preparation.sample_data import write_dataset

    path = cache / f"customer_churn-{rows}.csv"
    if not path.is_file():
        print(f"  generating {rows:,} rows -> {path}", flush=True)
        write_dataset(path, rows=rows, seed=42)
    return path


def fresh_home(parent: Path, name: str, data: Path) -> tuple[Path, dict, Path]:
    """A new ML_PIPELINE_HOME with the data where the DAG looks by default; its env."""
    from devtools.ports import free_port

    home = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ML_PIPELINE_HOME": str(home),
        "MODEL_API_URL": f"http://127.0.0.1:{free_port()}",
        "PYTHONUNBUFFERED": "1",
    }
    for key in (
        "ML_PIPELINE_STORAGE",
        "MLFLOW_TRACKING_URI",
        "AIRFLOW_HOME",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__EXECUTOR",
    ):
        env.pop(key, None)
    target = home / "data" / "incoming" / "customer_churn.csv"  # runs.default_data_uri
    target.parent.mkdir(parents=True)
    try:
        os.link(data, target)
    except OSError:
        shutil.copy(data, target)
    return home, env, target


def stop_api(env: dict) -> None:
    subprocess.run(
        [str(PYTHON), "-m", "devtools.services", "stop"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )


def task_durations_sqlite(db: Path) -> list[dict]:
    """Per-task seconds of the embedded run. `dag.test()` on 2.11 records each task's end
    but no start: it runs one task at a time, so a task took from the previous task's end
    (the first: from the DAG run's start) to its own."""
    if not db.is_file():
        return []
    with sqlite3.connect(db) as con:
        run_start = con.execute(
            "SELECT julianday(start_date) FROM dag_run ORDER BY start_date DESC LIMIT 1"
        ).fetchone()
        rows = con.execute(
            "SELECT task_id, map_index, state, julianday(start_date), julianday(end_date) "
            "FROM task_instance WHERE end_date IS NOT NULL ORDER BY end_date"
        ).fetchall()
    previous = run_start[0] if run_start else None
    out = []
    for task_id, map_index, state, start, end in rows:
        begin = start if start is not None else previous
        seconds = (end - begin) * 86400 if begin is not None else None
        out.append(
            {
                "task_id": task_id,
                "map_index": map_index,
                "state": state,
                "seconds": round(seconds, 2) if seconds is not None else None,
            }
        )
        previous = end
    return out


def run_with_api(cmd: list[str], conf: list[str], env: dict, home: Path) -> dict:
    """`cmd` with the `--conf` items, measured; the model API it started is stopped after."""
    cmd = [*cmd, *(arg for item in conf for arg in ("--conf", item))]
    try:
        return measured(cmd, env, home / "bench.log", marker=str(home))
    finally:
        stop_api(env)


def run_embedded(rows: int, data: Path, work: Path, conf: list[str]) -> dict:
    home, env, _ = fresh_home(work, "embedded", data)
    cmd = [str(PYTHON), "-m", "devtools.run_pipeline", "--rows", str(rows)]
    result = run_with_api(cmd, conf, env, home)
    summary_path = home / "run_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    match = re.search(r"Run \S+: (\w+) in ([\d.]+) s", result["output"])
    result.update(
        variant="embedded",
        home=str(home),
        state=(summary.get("state") or (match and match.group(1).lower()) or "failed"),
        dag_seconds=summary.get("seconds") or (float(match.group(2)) if match else None),
        tasks=task_durations_sqlite(home / "airflow" / "airflow.db"),
    )
    return result


def run_plain(rows: int, data: Path, work: Path, conf: list[str]) -> dict:
    home, env, target = fresh_home(work, "plain", data)
    out = home / "plain_summary.json"
    cmd = [
        str(PYTHON),
        str(ROOT / "benchmarks" / "plain_pipeline.py"),
        "--data-uri",
        str(target),
        "--out",
        str(out),
    ]
    result = run_with_api(cmd, conf, env, home)
    summary = json.loads(out.read_text()) if out.is_file() else {}
    result.update(
        variant="plain",
        home=str(home),
        state=summary.get("state", "failed"),
        dag_seconds=summary.get("seconds"),
        steps=summary.get("steps", {}),
        error=summary.get("error"),
    )
    return result


def run_distributed(rows: int, data: Path, work: Path, conf: list[str]) -> dict:
    root = Path(tempfile.mkdtemp(prefix="cluster-", dir=work))
    out = root / "bench_cluster.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    cmd = [
        str(PYTHON),
        str(Path(__file__).resolve()),
        "_cluster",
        str(data),
        str(root),
        str(out),
        *conf,
    ]
    result = measured(cmd, env, work / f"cluster-{rows}.log", marker=str(root))
    facts = json.loads(out.read_text()) if out.is_file() else {}
    result.update(
        variant="distributed",
        home=str(root),
        state=facts.get("state", "failed"),
        dag_seconds=facts.get("run_seconds"),
        startup=facts.get("startup"),
        tasks=facts.get("tasks", []),
        facts=facts,
    )
    return result


def cluster_child(data: str, root: str, out: str, conf: list[str]) -> int:
    """`bench_pipeline.py _cluster DATA ROOT OUT [K=V ...]`: start the cluster, upload the
    data, one deployment run with the DAG's default candidates, its facts to OUT, stop."""
    from devtools.cluster.cluster import Cluster
    from devtools.cluster.scenario import RAW_KEY, deployment_conf
    from include.ml_pipeline.names import DEPLOYMENT_DAG_ID
    from include.ml_pipeline.training.candidates import DEFAULT_CANDIDATES

    facts: dict = {"state": "failed"}
    started = time.perf_counter()
    cluster = Cluster.create(Path(root))
    try:
        cluster.start()
        facts["startup"] = {"seconds": round(time.perf_counter() - started, 1), **cluster.timings}
        began = time.perf_counter()
        cluster.wait_dag_parsed(DEPLOYMENT_DAG_ID)
        facts["startup"]["dag parsed"] = round(time.perf_counter() - began, 1)
        began = time.perf_counter()
        uri = cluster.s3.put(f"pipeline/{RAW_KEY}", Path(data).read_bytes())
        facts["upload_seconds"] = round(time.perf_counter() - began, 1)
        run_conf = deployment_conf(uri, DEFAULT_CANDIDATES)
        run_conf.pop("min_rows", None)  # the DAG's default, as the other variants
        for item in conf:
            key, _, value = item.partition("=")
            try:
                run_conf[key] = json.loads(value)
            except ValueError:
                run_conf[key] = value
        facts["conf"] = run_conf
        run_id = "bench_deploy_1"
        began = time.perf_counter()
        cluster.trigger(DEPLOYMENT_DAG_ID, run_id, run_conf)
        facts["trigger_seconds"] = round(time.perf_counter() - began, 1)
        facts["state"] = cluster.wait_run(DEPLOYMENT_DAG_ID, run_id, timeout=3600)
        facts["run_seconds"] = round(time.perf_counter() - began, 1)
        rows = cluster.postgres.query(
            "SELECT round(extract(epoch FROM end_date - start_date)::numeric, 1)::float, "
            "round(extract(epoch FROM start_date - queued_at)::numeric, 1)::float "
            "FROM dag_run WHERE dag_id = %s AND run_id = %s",
            (DEPLOYMENT_DAG_ID, run_id),
        )
        if rows:
            facts["dag_run_seconds"], facts["queued_seconds"] = rows[0]
        facts["tasks"] = cluster.task_instances(DEPLOYMENT_DAG_ID, run_id)
    except Exception as exc:  # reported, the cluster is still stopped
        facts["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        began = time.perf_counter()
        cluster.stop()
        facts["stop_seconds"] = round(time.perf_counter() - began, 1)
        Path(out).write_text(json.dumps(facts, indent=2, default=str))
    return 0 if facts["state"] == "success" else 1


# --------------------------------------------------------------------------- reporting


def gb(value: int | None) -> str:
    return f"{value / GB:.2f}" if value else "-"


def median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


#: Stages of the pipeline: the DAG's task ids (last part) and the plain script's steps.
STAGES = {
    "data": (
        "esperar_datos",
        "descargar_datos",
        "validar_datos",
        "preprocesar_datos",
        "dividir_datos",
        "wait",
        "load",
        "validate",
        "preprocess",
        "split",
    ),
    "experiment": ("iniciar_experimento", "start_experiment"),
    "fits": ("entrenar_modelo", "train"),
    "evaluate+register": ("evaluar_modelo", "registrar_mlflow", "evaluate", "register"),
    "decide+deploy+smoke": (
        "decidir_despliegue",
        "generar_artefactos",
        "desplegar_api",
        "pruebas_api",
        "decide",
        "release",
        "deploy_api",
        "smoke_test",
    ),
    "monitor+notify": (
        "configurar_monitoreo",
        "configurar_dashboards",
        "notificar_despliegue_exitoso",
        "notificar_modelo_rechazado",
        "notificar_fallo",
        "revertir_despliegue",
        "fin",
        "drift",
        "dashboard",
        "notify",
    ),
}


def stage_seconds(result: dict) -> tuple[dict[str, float], dict[str, float]]:
    """(seconds per stage, seconds per task or step) of one run."""
    steps: dict[str, float] = {}
    if result["variant"] == "plain":
        steps = {k: v for k, v in result.get("steps", {}).items() if not k.startswith("train[")}
        fits = {k: v for k, v in result.get("steps", {}).items() if k.startswith("train[")}
    else:
        fits = {}
        for task in result.get("tasks", []):
            name = task["task_id"].rsplit(".", 1)[-1]
            seconds = task.get("seconds") or 0
            if task.get("map_index", -1) not in (-1, None):
                fits[f"{name}[{task['map_index']}]"] = seconds
            steps[name] = steps.get(name, 0) + seconds
    stages = {stage: 0.0 for stage in STAGES}
    stages["other"] = 0.0
    for name, seconds in steps.items():
        stage = next((s for s, names in STAGES.items() if name in names), "other")
        stages[stage] += seconds
    return {k: round(v, 1) for k, v in stages.items() if v}, {**steps, **fits}


def where_time_goes(result: dict) -> str:
    """Seconds per stage, the fits one by one, and the rest of the wall time."""
    stages, steps = stage_seconds(result)
    if not stages:
        return "(no per-task durations)"
    total = sum(stages.values())
    fits = ", ".join(f"{v:.1f}" for k, v in steps.items() if "[" in k)
    run = result.get("dag_seconds") or 0
    shown = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
    return (
        f"tasks {total:.1f} s ({shown}; fits one by one {fits}); "
        f"run {run:.1f} s - tasks = {run - total:+.1f} s; process wall - run = "
        f"{result['wall'] - run:+.1f} s (start-up, imports, summary)"
    )


def report(rows: int, rounds: list[dict[str, dict]]) -> dict:
    """Print one size's table; return its medians and ratios."""
    variants = [v for v in ("embedded", "plain", "distributed") if v in rounds[0]]
    print(
        f"\n=== {rows:,} rows ({len(rounds)} round(s); load average now "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}) ==="
    )
    print(
        f"{'variant':<12} {'state':<8} {'wall s':>8} {'DAG s':>8} {'max RSS GB':>10} "
        f"{'tree sum GB':>11}  largest processes (sampled peak GB)"
    )
    summary: dict = {"rows": rows, "rounds": len(rounds)}
    for variant in variants:
        results = [r[variant] for r in rounds]
        med = {
            "wall": median([r["wall"] for r in results]),
            "dag_seconds": median([r.get("dag_seconds") for r in results]),
            "max_rss": max((r["max_rss"] or 0) for r in results),
            "tree_peak": max(r["tree_peak"] for r in results),
            "states": [r["state"] for r in results],
        }
        peaks: dict[str, int] = {}
        for r in results:
            for name, rss in by_name(r["processes"]).items():
                peaks[name] = max(peaks.get(name, 0), rss)
        med["process_peaks"] = peaks
        med["largest_process"] = max([med["max_rss"], *peaks.values()])
        summary[variant] = med
        shown = ", ".join(
            f"{k} {gb(v)}" for k, v in sorted(peaks.items(), key=lambda kv: -kv[1])[:5]
        )
        print(
            f"{variant:<12} {'/'.join(sorted(set(med['states']))):<8} {med['wall'] or 0:>8.1f} "
            f"{med['dag_seconds'] or 0:>8.1f} {gb(med['max_rss']):>10} "
            f"{gb(med['tree_peak']):>11}  {shown}"
        )
        if variant == "distributed":
            startup = results[-1].get("startup") or {}
            print(
                f"{'':<12} harness start-up {startup.get('seconds', '-')} s "
                f"(+ DAG parsed {startup.get('dag parsed', '-')} s): "
                + ", ".join(
                    f"{k} {v}" for k, v in startup.items() if k not in ("seconds", "dag parsed")
                )
            )
        print(f"{'':<12} where the time goes (last round): {where_time_goes(results[-1])}")
        med["stages"] = stage_seconds(results[-1])[0]

    def ratios(num: str, den: str, key: str) -> list[float]:
        return [
            r[num][key] / r[den][key]
            for r in rounds
            if r[num].get(key)
            and r[den].get(key)
            and r[num]["state"] == "success"
            and r[den]["state"] == "success"
        ]

    print("ratios (per round, same round's numbers; median):")
    for num, den, goal in (
        ("distributed", "embedded", DIST_GOAL),
        ("embedded", "plain", PLAIN_GOAL),
    ):
        if num not in rounds[0] or den not in rounds[0]:
            continue
        for key, what in (("wall", "wall"), ("dag_seconds", "DAG/run")):
            values = ratios(num, den, key)
            med = median(values)
            summary[f"{num}/{den} {what}"] = med
            verdict = "-" if med is None else ("meets" if med <= goal else "MISSES")
            print(
                f"  {num} / {den} {what:<8} "
                f"{', '.join(f'{v:.2f}' for v in values) or '-':<20} median "
                f"{med if med is not None else '-'}  goal <= {goal}: {verdict}"
            )
    worst = max(summary[v]["largest_process"] for v in variants)
    summary["largest_process"] = worst
    print(
        f"  largest single process {gb(worst)} GB: "
        f"{'under' if worst < MEMORY_GOAL else 'OVER'} the 4 GB goal"
    )
    return summary


def plot(summaries: list[dict], path: Path, raw: dict | None = None) -> None:
    """Wall time and peak memory against rows; each wall point is labelled with the load
    average before its run(s) (from `raw`), since sizes may be measured at other times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = sorted(summaries, key=lambda s: s["rows"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for variant, marker, color in (
        ("embedded", "o", "tab:blue"),
        ("plain", "s", "tab:orange"),
        ("distributed", "^", "tab:green"),
    ):
        points = [(s["rows"], s[variant]) for s in summaries if variant in s]
        if not points:
            continue
        xs = [p[0] for p in points]
        left.plot(
            xs,
            [p[1]["wall"] for p in points],
            marker=marker,
            color=color,
            label=f"{variant} process wall",
        )
        left.plot(
            xs,
            [p[1]["dag_seconds"] for p in points],
            marker=marker,
            color=color,
            linestyle=":",
            label=f"{variant} DAG run / steps",
        )
        for rows, summary in points:
            loads = [
                r[variant]["load_before"]
                for r in (raw or {}).get(str(rows), [])
                if r.get(variant, {}).get("load_before") is not None
            ]
            if loads:
                left.annotate(
                    f"load {median(loads):.0f}",
                    (rows, summary["wall"]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                    color=color,
                )
        right.plot(
            xs,
            [p[1]["largest_process"] / GB for p in points],
            marker=marker,
            color=color,
            label=f"{variant} largest process",
        )
        right.plot(
            xs,
            [p[1]["tree_peak"] / GB for p in points],
            marker=marker,
            color=color,
            linestyle=":",
            label=f"{variant} whole tree (sum)",
        )
    for axis, ylabel in ((left, "wall time (s)"), (right, "peak RSS (GB)")):
        axis.set_xscale("log")
        axis.set_xlabel("rows of generated data")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    right.axhline(MEMORY_GOAL / GB, color="red", linewidth=0.8, linestyle="--")
    fig.suptitle(
        "ml_model_deployment_advanced: growth with rows (2 cores; the load average "
        "before each run next to its point)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


# --------------------------------------------------------------------------- main


def strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "output"}


def save(summaries: dict, raw: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"summaries": summaries, "runs": raw}, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_cluster"]:
        return cluster_child(argv[1], argv[2], argv[3], argv[4:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated sizes")
    parser.add_argument(
        "--variants",
        default="embedded,plain,distributed",
        help="which to run, in this order each round",
    )
    parser.add_argument("--skip-distributed", action="store_true")
    parser.add_argument(
        "--distributed-rows",
        default=None,
        help="sizes at which the distributed run is made (default: all)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds per size (medians)")
    parser.add_argument(
        "--conf",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help=f"Param override for every variant (default {DEFAULT_CONF})",
    )
    parser.add_argument("--work", type=Path, default=None, help="folder for the runs")
    parser.add_argument("--keep", action="store_true", help="keep the runs' folders")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--replot", action="store_true", help=f"only redraw the plot from {RESULTS.name}"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help=f"add to the sizes and variants already in {RESULTS.name}",
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    if args.replot:
        saved = json.loads(RESULTS.read_text())
        plot(list(saved["summaries"].values()), PLOT, saved.get("runs"))
        return 0
    sizes = [int(float(x)) for x in args.rows.split(",") if x.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.skip_distributed and "distributed" in variants:
        variants.remove("distributed")
    dist_sizes = (
        {int(float(x)) for x in args.distributed_rows.split(",") if x.strip()}
        if args.distributed_rows
        else set(sizes)
    )
    conf = list(DEFAULT_CONF if args.conf is None else args.conf)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # the cluster's PostgreSQL runs as another user and must reach it
    cache = work / "data"
    cache.mkdir(exist_ok=True)
    print(f"work folder {work}; conf {conf}; load {os.getloadavg()}", flush=True)
    runners = {"embedded": run_embedded, "plain": run_plain, "distributed": run_distributed}
    previous = json.loads(RESULTS.read_text()) if args.merge and RESULTS.is_file() else {}
    summaries = {int(k): v for k, v in previous.get("summaries", {}).items()}
    raw: dict = previous.get("runs", {})
    for rows in sizes:
        data = dataset(rows, cache)
        rounds = []
        # --merge: a size measured before keeps its rounds; the variants run now replace
        # theirs round by round (e.g. --variants distributed adds to embedded + plain).
        earlier = raw.get(str(rows), []) if args.merge else []
        for index in range(args.repeat):
            round_results = dict(earlier[index]) if index < len(earlier) else {}
            for variant in variants:
                if variant == "distributed" and rows not in dist_sizes:
                    continue
                load = os.getloadavg()[0]
                print(
                    f"[{rows:,} rows, round {index + 1}] {variant} (load {load:.1f}) ...",
                    flush=True,
                )
                result = runners[variant](rows, data, work, conf)
                result["load_before"] = load
                print(
                    f"  {result['state']} wall {result['wall']:.1f} s, DAG "
                    f"{result.get('dag_seconds')} s, max RSS {gb(result['max_rss'])} GB "
                    f"(log {result['log']})",
                    flush=True,
                )
                if result["state"] != "success":
                    print("\n".join(result["output"].splitlines()[-25:]))
                    if result.get("facts", {}).get("error"):  # the cluster child's own words
                        print(f"  error: {result['facts']['error']}")
                round_results[variant] = result
                raw[str(rows)] = [
                    *[{v: strip(r) for v, r in rnd.items()} for rnd in rounds],
                    {v: strip(r) for v, r in round_results.items()},
                    *earlier[index + 1 :],
                ]
                save(summaries, raw)
            rounds.append(round_results)
        summaries[rows] = report(rows, rounds)
        save(summaries, raw)
        if not args.no_plot:
            plot(list(summaries.values()), PLOT, raw)
    if not args.keep:
        for child in work.iterdir():
            if child.name != "data":
                shutil.rmtree(child, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
