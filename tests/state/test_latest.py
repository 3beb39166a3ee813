"""Latest-wins: a burst of requests runs the first and the last, never a queue."""

from __future__ import annotations

import threading
import time

from dashapp.state import LatestOnly


def test_a_burst_runs_only_the_first_and_the_last():
    release, started = threading.Event(), threading.Event()
    ran, done = [], []

    def job(i):
        if i == 0:
            started.set()
            release.wait(5)  # the first job is slow: the rest of the burst piles up
        ran.append(i)
        return i

    runner = LatestOnly(lambda seq, result, error: done.append((seq, result, error)))
    runner.submit(job, 0)
    # (on a loaded machine the pool's thread may start after the burst: wait for it, or the
    # first request is itself replaced before it runs)
    assert started.wait(10)
    for i in range(1, 50):
        runner.submit(job, i)
    release.set()
    assert runner.wait(5)
    assert ran == [0, 49]
    assert runner.dropped == 48
    assert done[-1] == (50, 49, None)


def test_errors_are_delivered_and_later_jobs_still_run():
    done = []
    runner = LatestOnly(lambda seq, result, error: done.append((result, type(error))))

    def boom():
        raise ValueError("bad file")

    runner.submit(boom)
    runner.wait(5)
    runner.submit(lambda: 7)
    runner.wait(5)
    assert done == [(None, ValueError), (7, type(None))]


def test_slow_reads_of_one_view_do_not_queue_behind_each_other():
    runner = LatestOnly(lambda *a: None)
    starts = []

    def job():
        starts.append(time.monotonic())
        time.sleep(0.05)

    for _ in range(20):
        runner.submit(job)
        time.sleep(0.005)
    runner.wait(5)
    assert len(starts) <= 4  # ~0.1 s of requests while each read takes 0.05 s


def test_sessions_stuck_in_slow_reads_do_not_hold_up_another_sessions_read():
    """Every session's reads share one pool: ten sessions each waiting on a slow read (a huge
    slice, a stalled filesystem) must leave room for an eleventh session's quick one."""
    release = threading.Event()
    stuck = [LatestOnly(lambda *a: None) for _ in range(10)]
    for runner in stuck:
        runner.submit(release.wait, 30)
    quick_done = threading.Event()
    quick = LatestOnly(lambda seq, result, error: quick_done.set())
    try:
        quick.submit(lambda: 1)
        assert quick_done.wait(10), "the quick read waited behind other sessions' slow reads"
    finally:
        release.set()
        for runner in stuck:
            runner.wait(10)
