"""`trees.shared_work`: pieces taken in turn by the caller and the pool's helpers, results
in order; a helper that cannot start (its core busy) is cancelled rather than waited for;
a piece a helper still holds, or failed, the caller computes itself."""

from __future__ import annotations

import threading

from include.ml_pipeline.serving.compiled import trees


def test_every_piece_once_results_in_order():
    taken: list[int] = []
    assert trees.shared_work(9, 2, lambda i: taken.append(i) or i * i) == [i * i for i in range(9)]
    assert sorted(taken) == list(range(9))
    assert trees.shared_work(1, 2, lambda i: i + 1) == [1]
    assert trees.row_bounds(10, 4) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert trees.row_bounds(3, 4) == [(0, 1), (1, 2), (2, 3)]


def test_a_helper_that_cannot_start_is_cancelled_not_waited_for():
    release = threading.Event()
    blocker = trees._pool(2).submit(release.wait, 30)  # the pool's one thread: busy
    try:
        caller = threading.get_ident()
        threads = []
        results = trees.shared_work(4, 2, lambda i: threads.append(threading.get_ident()) or i)
        assert results == [0, 1, 2, 3]
        assert threads == [caller] * 4  # all done here, without waiting for the helper
        assert not blocker.done()
    finally:
        release.set()
    blocker.result(10)


def test_a_piece_a_helper_failed_or_holds_is_computed_by_the_caller():
    started = threading.Event()
    release = threading.Event()

    def work(i: int) -> str:
        if threading.current_thread() is threading.main_thread():
            started.wait(10)  # the helper takes a piece before the caller runs out
            return f"caller {i}"
        started.set()
        if i == 1:
            release.wait(10)  # held past the caller's end: not waited for
            return "late"
        raise ValueError(f"piece {i}")

    try:
        results = trees.shared_work(4, 2, work)
    finally:
        release.set()
    assert results == [f"caller {i}" for i in range(4)]
