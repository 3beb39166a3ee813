"""The workers of a cluster as rows: what the scheduler says of each, in plain dicts.

:func:`worker_rows` turns a scheduler's ``identity()`` into the ``info()["workers"]`` list;
:func:`arrivals` names who connected and who left since the last look (the manager's events).
"""

from __future__ import annotations

from typing import Any

from .report import natural

__all__ = ["arrivals", "worker_rows"]


def worker_rows(identity: dict[str, Any], job_of: dict[str, str]) -> list[dict[str, Any]]:
    """One JSON-safe dict per worker, sorted by name (``w-10`` after ``w-9``).

    Parameters
    ----------
    identity : dict
        The scheduler's ``identity(n_workers=-1)``.
    job_of : dict
        Worker name -> the batch job id it runs in (workers of other clusters have none).

    Returns
    -------
    list of dict
        ``name``, ``address``, ``host``, ``nthreads``, ``memory``, ``memory_limit``, ``cpu``,
        ``executing``, ``in_memory``, ``ready``, ``status``, ``job_id``.
    """
    rows = []
    for address, w in (identity.get("workers") or {}).items():
        metrics = w.get("metrics") or {}
        counts = metrics.get("task_counts") or {}
        name = str(w.get("name", address))
        rows.append(
            {
                "name": name,
                "address": address,
                "host": w.get("host"),
                "nthreads": w.get("nthreads"),
                "memory": metrics.get("memory"),
                "memory_limit": w.get("memory_limit"),
                "cpu": metrics.get("cpu"),
                "executing": counts.get("executing", 0),
                "in_memory": counts.get("memory", 0),
                "ready": counts.get("ready", 0) + counts.get("constrained", 0),
                "status": w.get("status"),
                "job_id": job_of.get(name),
            }
        )
    rows.sort(key=lambda w: natural(w["name"]))
    return rows


def arrivals(before: set[str], now: set[str]) -> list[str]:
    """Events for workers that connected or left between two looks, in name order."""
    came = [f"worker {n} connected" for n in sorted(now - before, key=natural)]
    went = [f"worker {n} left" for n in sorted(before - now, key=natural)]
    return came + went
