"""The shadow's off-path queue (`experiment.ShadowRunner`): a cheap job runs on the event
loop once its cost is known, a first or slow one in the worker thread; jobs wait for the
app to be idle (no request in it), and under load run at most one per `force_after`; a job
that waited past its timeout is skipped and counted, never run late; an inline job past
its timeout is an error as a threaded one is."""

from __future__ import annotations

import asyncio
import threading
import time

from include.ml_pipeline.serving.api.experiment import ShadowRunner


def _recorder():
    seen: list[tuple[str, object, str | None]] = []

    def job(value="ok", seconds: float = 0.0):
        def run():
            if seconds:
                time.sleep(seconds)
            return threading.current_thread().name, value

        return run

    def done(result, error):
        seen.append((result[0] if result else "", result[1] if result else None, error))

    return seen, job, done


async def _settle(runner: ShadowRunner, seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while (runner.pending or runner._threaded is not None) and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.01)


def test_a_cheap_job_runs_on_the_loop_once_its_cost_is_known():
    async def main():
        runner = ShadowRunner(10, inline_budget=0.05)
        runner.start()
        seen, job, done = _recorder()
        try:
            for value in range(3):
                assert runner.submit(job(value), 1.0, done, key="cheap")
                await _settle(runner)
            assert runner.submit(job("no key"), 1.0, done, key=None)
            await _settle(runner)
        finally:
            await runner.stop()
        return runner, seen

    runner, seen = asyncio.run(main())
    loop_thread = threading.current_thread().name  # asyncio.run's loop runs here
    assert [value for _, value, _ in seen] == [0, 1, 2, "no key"]
    assert seen[0][0].startswith("shadow")  # first job: its cost unknown, the thread
    assert seen[1][0] == seen[2][0] == loop_thread  # cheap: on the loop
    assert seen[3][0].startswith("shadow")  # no key (e.g. an isolated worker): the thread
    assert runner.inline == 2
    assert runner.done == 4


def test_a_job_slower_than_the_budget_goes_back_to_the_thread():
    """One job ten times over the budget sends the model's jobs back to the thread; so do
    three slow ones in a row, but not one slow one (a preempted job) between cheap ones."""

    async def main():
        runner = ShadowRunner(10, inline_budget=0.005)
        runner.start()
        seen, job, done = _recorder()
        try:
            for value, seconds in (
                (0, 0.0),  # learns: cheap (thread)
                (1, 0.012),  # inline, slow once: stays
                (2, 0.0),  # inline
                (3, 0.06),  # inline, ten times over: back to the thread
                (4, 0.0),  # thread: cheap again
                (5, 0.012),  # inline, slow 1
                (6, 0.012),  # inline, slow 2
                (7, 0.012),  # inline, slow 3: back to the thread
                (8, 0.0),  # thread
            ):
                assert runner.submit(job(value, seconds), 1.0, done, key="m")
                await _settle(runner)
        finally:
            await runner.stop()
        return seen

    seen = asyncio.run(main())
    loop_thread = threading.current_thread().name
    on_loop = [thread == loop_thread for thread, _, _ in seen]
    assert on_loop == [False, True, True, True, False, True, True, True, False]
    assert all(error is None for _, _, error in seen)


def test_an_inline_job_past_its_timeout_is_an_error():
    async def main():
        runner = ShadowRunner(10, inline_budget=1.0)
        runner.start()
        seen, job, done = _recorder()
        try:
            runner.submit(job(0), 1.0, done, key="m")
            await _settle(runner)
            runner.submit(job(1, 0.03), 0.01, done, key="m")  # inline: 30 ms > 10 ms
            await _settle(runner)
        finally:
            await runner.stop()
        return runner, seen

    runner, seen = asyncio.run(main())
    assert seen[1][2] == "timeout: no answer within 10 ms"
    assert runner.inline == 1


def test_jobs_wait_for_the_app_to_be_idle_and_run_sampled_under_load():
    async def main():
        runner = ShadowRunner(100, inline_budget=1.0)
        runner.force_after = 0.05
        runner.start()
        seen, job, done = _recorder()
        skipped: list[int] = []
        try:
            runner.submit(job("learn"), 1.0, done, key="m")
            await _settle(runner)
            runner.enter()  # a request in the app
            for value in range(10):
                runner.submit(job(value), 5.0, done, key="m", skipped=lambda: skipped.append(1))
            await asyncio.sleep(0.01)
            assert len(seen) == 1  # none ran while the request was in
            await asyncio.sleep(0.12)  # still busy: ~one job per force_after
            forced = len(seen) - 1
            assert 1 <= forced <= 3
            runner.leave()  # idle: the rest run
            await _settle(runner)
            assert len(seen) == 11
            assert not skipped
            # a job that waits past its timeout (the app stays busy) is skipped, counted
            runner.enter()
            runner.submit(job("late"), 0.01, done, key="m", skipped=lambda: skipped.append(1))
            runner.submit(job("late"), 0.01, done, key="m", skipped=lambda: skipped.append(1))
            await asyncio.sleep(0.1)
            runner.leave()
            await _settle(runner)
        finally:
            await runner.stop()
        return runner, seen, skipped

    runner, seen, skipped = asyncio.run(main())
    assert [value for _, value, _ in seen[1:]] == list(range(10))  # in order, none lost
    assert len(skipped) == 2
    assert runner.skipped == 2
    assert all(value != "late" for _, value, _ in seen)
    assert runner.busy == 0


def test_a_full_queue_drops_and_counts():
    async def main():
        runner = ShadowRunner(2, inline_budget=1.0)
        runner.start()
        seen, job, done = _recorder()
        try:
            runner.enter()
            accepted = [runner.submit(job(i), 1.0, done, key="m") for i in range(5)]
            runner.leave()
            await _settle(runner)
        finally:
            await runner.stop()
        return runner, accepted, seen

    runner, accepted, seen = asyncio.run(main())
    assert accepted == [True, True, False, False, False]
    assert runner.dropped == 3
    assert len(seen) == 2


def test_under_load_the_jobs_take_at_most_max_share_of_the_clock_and_the_rest_is_skipped():
    """A stream faster than the challenger within its share: a sample is run, spread
    over the stream, the rest skipped at once (counted); a slow stream is shadowed whole."""

    async def main(gap: float):
        runner = ShadowRunner(1000, inline_budget=1.0, max_share=0.2)
        runner.burst = 0.004
        runner.start()
        ran: list[int] = []
        used: list[float] = []  # each job's CPU seconds
        skipped: list[int] = []

        def job(i):
            def run():
                cpu = time.thread_time()
                while time.thread_time() - cpu < 0.002:  # 2 ms of CPU per request
                    pass
                used.append(time.thread_time() - cpu)
                return i

            return run

        began = time.perf_counter()
        try:
            for i in range(60):
                runner.submit(
                    job(i),
                    1.0,
                    lambda result, error: ran.append(result),
                    key="m",
                    skipped=lambda i=i: skipped.append(i),
                )
                await asyncio.sleep(gap)
            await _settle(runner)
        finally:
            await runner.stop()
        return runner, ran, used, skipped, time.perf_counter() - began

    # a request every ~1 ms, 2 ms of CPU each: 200% of the clock wanted, 20% allowed
    runner, ran, used, skipped, took = asyncio.run(main(0.001))
    assert len(ran) + len(skipped) == 60  # each request run or skipped, none lost
    assert runner.skipped == len(skipped)
    allowed = 0.2 * took + 0.004  # the share of the clock, plus the burst
    assert sum(used) <= allowed + 0.005  # (+ the job past the last check, timer slack)
    wanted = 60 * 0.002
    if wanted > 1.5 * allowed:  # asked well past the share (not on a stalled box)
        assert len(skipped) >= 10
        assert max(ran) > 30  # a sample spread over the stream, not its first requests
    assert ran == sorted(ran)
    # a request every 20 ms: 10% of the clock, within the share: every request shadowed
    runner, ran, used, skipped, _ = asyncio.run(main(0.02))
    assert len(ran) == 60
    assert not skipped
