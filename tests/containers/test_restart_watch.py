"""containers/run.py's RestartWatch: when `astro dev start`'s reproduction gives up on an
Airflow container, without podman (the states are what `podman inspect` prints)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.quick

run = pytest.importorskip("containers.run", reason="containers/ not in this image")


def test_restarts_during_the_migration_do_not_count():
    watch = run.RestartWatch(allowed=5)
    # Airflow 3: the scheduler restarts every ~8 s while db-migration runs (CI, 2026-12-04:
    # 5 restarts during a slow migration, then the run failed the moment it ended)
    for count in range(6):
        assert not watch.failed("scheduler", f"running 0 {count}", False, migrating=True)
    assert not watch.failed("scheduler", "running 0 5", False, migrating=False)
    assert not watch.failed("scheduler", "running 0 9", False, migrating=False)
    assert watch.failed("scheduler", "running 0 10", False, migrating=False)


def test_restarts_count_from_the_start_without_a_migration():
    watch = run.RestartWatch(allowed=5)  # Airflow 2: no db-migration service
    assert not watch.failed("scheduler", "running 0 0", False, migrating=False)
    assert not watch.failed("scheduler", "restarting 1 4", False, migrating=False)
    assert watch.failed("scheduler", "running 0 5", False, migrating=False)


def test_a_one_shot_service_fails_on_a_non_zero_exit_only():
    watch = run.RestartWatch()
    assert not watch.failed("db-migration", "running 0 0", True, migrating=True)
    assert not watch.failed("db-migration", "exited 0 0", True, migrating=False)
    assert watch.failed("db-migration", "exited 1 0", True, migrating=False)
    assert not watch.failed("db-migration", "", True, migrating=False)  # not created yet
