"""Everything that moved between Airflow 2.11 and 3.x, in one place.

DAG files and the rest of this layer import Airflow's version-specific names from here
only: the TaskFlow decorators and `Param` (`airflow.decorators` / `airflow.models.param` on
2.11, `airflow.sdk` on 3.x), Datasets ↔ Assets and their "or time" timetable,
`EmptyOperator` and `TriggerDagRunOperator` (the standard provider on 3.x), the sensor's
`PokeReturnValue`, `BaseHook`, and the logical date of a task's context
(`execution_date` is gone on 3.x).

On 3.x the standard provider's `TriggerDagRunOperator` module imports the metadata
database's ORM models at its top, which its Airflow 3 code path does not use; importing it
as it is made the monitoring DAG file cost 1.25x a bare `import airflow.sdk`.
`_import_deferring` imports the same module with those models bound to stand-ins that
import them on first use (`benchmarks/bench_dag_parse.py`, `tests/dags/test_monitoring_trigger.py`).

Why they stay (measured 2026-12-03, Airflow 3.3.2, `bench_dag_parse.py --repeat 7`, CPU
medians, ratio to `import airflow.sdk`): with them the monitoring DAG parses at 1.07x (the
deployment DAG 1.10x); the simplest alternative, a plain import of the provider's module,
costs 1.30x (1.57x wall), over the 1.2x goal. Nothing simpler keeps Airflow's own operator
class (its "Triggered DAG" link, the Dependencies view): stdlib `importlib.util.LazyLoader`
does not help, since the module's `from airflow.models.dag import DagModel` reads the
attribute (so runs the module) at once; and our own operator raising
`DagRunTriggerException` would be a second, unsupported copy of the provider's.
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

# What the standard provider's `trigger_dagrun` module imports at its top but, on Airflow 3,
# needs only in its Airflow 2 code paths (`trigger_dag`, `SerializedDagModel`, the
# deferrable wait's `DagStateTrigger`) or when no run id is given (`DagRun.generate_run_id`):
# the ORM models of the metadata database, 0.25 s of a 1.1 s parse, which a DAG processor or
# a task process of the Task SDK does not use to build or run the operator.
_TRIGGER_DAGRUN_MODULE = "airflow.providers.standard.operators.trigger_dagrun"
_TRIGGER_DAGRUN_EXECUTE_TIME = (
    "airflow.api.common.trigger_dag",
    "airflow.models.dag",
    "airflow.models.dagrun",
    "airflow.models.serialized_dag",
    "airflow.providers.standard.triggers.external_task",
)
_deferring = False


class _TooEarly(Exception):
    """A deferred name was used while its module was being imported: import it normally."""


class _DeferredName:
    """Stands for `module.name` until first used (called, an attribute read, an isinstance
    check); then imports the module and puts the real object where this one was bound."""

    def __init__(self, module: str, name: str) -> None:
        self._module, self._name = module, name
        self._holders: list[tuple[Any, str]] = []
        self._real: Any = None

    def _resolve(self) -> Any:
        if self._real is None:
            if _deferring:
                raise _TooEarly(f"{self._module}.{self._name}")
            import importlib

            self._real = getattr(importlib.import_module(self._module), self._name)
            for holder, key in self._holders:
                if vars(holder).get(key) is self:
                    setattr(holder, key, self._real)
        return self._real

    def __getattr__(self, attribute: str) -> Any:
        if attribute in {"_module", "_name", "_holders", "_real"}:  # not set yet
            raise AttributeError(attribute)
        return getattr(self._resolve(), attribute)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, self._resolve())

    def __subclasscheck__(self, subclass: type) -> bool:
        return issubclass(subclass, self._resolve())

    def __repr__(self) -> str:
        return f"<{self._module}.{self._name}, imported on first use>"


def _import_deferring(module_name: str, deferred: tuple[str, ...]) -> Any:
    """Import `module_name` with its top-level imports of the `deferred` modules (those not
    imported yet) bound to `_DeferredName`s, imported on first use. Anything unexpected
    (a deferred name used at import time, an import error) falls back to a plain import."""
    import importlib
    import sys
    import types

    global _deferring
    if module_name in sys.modules:
        return sys.modules[module_name]
    before = set(sys.modules)

    class _Placeholder(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):  # the import system's questions: not a package
                raise AttributeError(name)
            return _DeferredName(self.__name__, name)

    placeholders = {name: _Placeholder(name) for name in deferred if name not in sys.modules}
    sys.modules.update(placeholders)
    _deferring = True
    try:
        module = importlib.import_module(module_name)
    except Exception:  # the plain import below raises the real error
        module = None
    finally:
        _deferring = False
        for name, placeholder in placeholders.items():
            if sys.modules.get(name) is placeholder:
                del sys.modules[name]
    new = [sys.modules[name] for name in set(sys.modules) - before if name in sys.modules]
    if module is None:
        for imported in new:  # executed against the placeholders: forget them
            sys.modules.pop(imported.__name__, None)
        return importlib.import_module(module_name)
    for holder in new:
        for key, value in list(vars(holder).items()):
            if isinstance(value, _DeferredName):
                value._holders.append((holder, key))
    for package in {name.rsplit(".", 1)[0] for name in deferred} & set(sys.modules):
        for key, value in list(vars(sys.modules[package]).items()):
            if isinstance(value, _DeferredName):  # a lazy attribute cached: let it look again
                delattr(sys.modules[package], key)
    return module


def __getattr__(name: str) -> Any:
    """`TriggerDagRunOperator`, imported on first use: only the monitoring DAG needs it. On
    Airflow 3 it is the standard provider's operator, imported with the metadata database's
    models deferred to first use (see `_TRIGGER_DAGRUN_EXECUTE_TIME`)."""
    if name == "TriggerDagRunOperator":
        if AIRFLOW_3:  # pragma: no cover
            module = _import_deferring(_TRIGGER_DAGRUN_MODULE, _TRIGGER_DAGRUN_EXECUTE_TIME)
            return module.TriggerDagRunOperator
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


def serialize_dag(dag: Any) -> dict[str, Any]:
    """The DAG as the DAG processor stores it for the scheduler and the UI (its task types,
    extra links and the dependencies between DAGs that the Dependencies view draws)."""
    if AIRFLOW_3:  # pragma: no cover
        # Airflow 3 only: make lint type-checks against 2.11 (requirements.lock)
        from airflow.serialization.serialized_objects import (  # type: ignore[attr-defined]
            DagSerialization,
        )

        return DagSerialization.to_dict(dag)
    from airflow.serialization.serialized_objects import SerializedDAG

    return SerializedDAG.to_dict(dag)


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
    "serialize_dag",
    "sync_dags_to_db",
    "task",
    "task_group",
]
