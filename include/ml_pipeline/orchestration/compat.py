"""Everything that moved between Airflow 2.11 and 3.x, in one place.

DAG files and the rest of this layer import Airflow's version-specific names from here
only: the TaskFlow decorators and `Param` (`airflow.decorators` / `airflow.models.param` on
2.11, `airflow.sdk` on 3.x), Datasets ↔ Assets and their "or time" timetable,
`EmptyOperator` and `TriggerDagRunOperator` (the standard provider on 3.x), the sensor's
`PokeReturnValue`, `BaseHook`, and the logical date of a task's context
(`execution_date` is gone on 3.x).
"""

from __future__ import annotations

from typing import Any

import airflow

AIRFLOW_VERSION = airflow.__version__
AIRFLOW_3 = int(AIRFLOW_VERSION.split(".", 1)[0]) >= 3

if AIRFLOW_3:  # pragma: no cover - exercised by the Airflow 3 suite
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import (
        Asset,
        AssetOrTimeSchedule,
        BaseHook,
        CronTriggerTimetable,
        Param,
        PokeReturnValue,
        dag,
        task,
        task_group,
    )
    from airflow.sdk.exceptions import (
        AirflowFailException,
        AirflowNotFoundException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )
else:
    from airflow.datasets import Dataset as Asset
    from airflow.decorators import dag, task, task_group
    from airflow.exceptions import (
        AirflowFailException,
        AirflowNotFoundException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )
    from airflow.hooks.base import BaseHook
    from airflow.models.param import Param
    from airflow.operators.empty import EmptyOperator
    from airflow.sensors.base import PokeReturnValue
    from airflow.timetables.datasets import DatasetOrTimeSchedule as AssetOrTimeSchedule
    from airflow.timetables.trigger import CronTriggerTimetable

def __getattr__(name: str) -> Any:
    """`TriggerDagRunOperator`, imported on first use: on Airflow 3 it pulls in the trigger
    API and the serialized-DAG models (0.3 s), which only the monitoring DAG needs."""
    if name == "TriggerDagRunOperator":
        if AIRFLOW_3:  # pragma: no cover
            from airflow.providers.standard.operators.trigger_dagrun import (
                TriggerDagRunOperator,
            )
        else:
            from airflow.operators.trigger_dagrun import TriggerDagRunOperator
        return TriggerDagRunOperator  # noqa: AIR312 - the 2.11 image has no standard provider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def asset_or_time_schedule(timetable: Any, assets: Any) -> Any:
    """Run on a timetable *and* whenever `assets` are updated."""
    if AIRFLOW_3:  # pragma: no cover
        return AssetOrTimeSchedule(timetable=timetable, assets=assets)
    return AssetOrTimeSchedule(timetable=timetable, datasets=assets)


def keyed_output(task_output: Any, key: str) -> Any:
    """The XCom `key` of the task behind `task_output` (a TaskFlow call's result), as an
    argument for downstream tasks: the same edge as the return value, another value."""
    if AIRFLOW_3:  # pragma: no cover
        from airflow.sdk.definitions.xcom_arg import PlainXComArg
    else:
        from airflow.models.xcom_arg import PlainXComArg
    return PlainXComArg(task_output.operator, key=key)


def dag_bag(dag_folder: str | None = None) -> Any:
    """The DAGs of a file or folder (default: the DAGs folder), without Airflow's examples
    (DagBag moved on 3.x)."""
    if AIRFLOW_3:  # pragma: no cover
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=dag_folder)
    from airflow.models import DagBag

    return DagBag(dag_folder=dag_folder, include_examples=False)


def sync_dags_to_db(bag: Any) -> None:
    """Write a DagBag's DAGs to the metadata database (DAG rows and serialized DAGs), as
    the scheduler's DAG processor does."""
    if AIRFLOW_3:  # pragma: no cover
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import sync_bag_to_db

        DagBundlesManager().sync_bundles_to_db()  # the DAG rows refer to their bundle
        sync_bag_to_db(bag, bundle_name="dags-folder", bundle_version=None)
        return
    bag.sync_to_db()


def run_dag_in_process(dag: Any, *, run_conf: dict[str, Any], logical_date: Any = None) -> Any:
    """`dag.test()`: one run in this process; returns the DagRun."""
    if AIRFLOW_3:  # pragma: no cover
        return dag.test(run_conf=run_conf, logical_date=logical_date)
    return dag.test(run_conf=run_conf, execution_date=logical_date)


def logical_date(context: dict[str, Any]) -> Any:
    """The run's logical date from a task context (None for a run that has none)."""
    return context.get("logical_date") or context.get("data_interval_end")


__all__ = [
    "AIRFLOW_3",
    "AIRFLOW_VERSION",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "Asset",
    "AssetOrTimeSchedule",
    "BaseHook",
    "CronTriggerTimetable",
    "EmptyOperator",
    "Param",
    "PokeReturnValue",
    "asset_or_time_schedule",
    "dag",
    "dag_bag",
    "keyed_output",
    "logical_date",
    "run_dag_in_process",
    "sync_dags_to_db",
    "task",
    "task_group",
]
