"""Where dask computes: a thread pool of our own, handed to each computation, ended with the work.

Dask's default threaded scheduler keeps global pools whose (non-daemon) threads outlive the
work, and a process that joins its threads before it exits (the CLI does) would wait on them.
The pool is passed to each compute call, never set in dask's (process-wide) config: ensemble
members postprocess in parallel threads, and one member's config would replace another's.
"""

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

ComputeOptions = dict[str, Any]  # keyword arguments for dask.compute and .compute()


@contextmanager
def dask_threads(workers: int | None = None) -> Iterator[ComputeOptions]:
    """Options that run a computation on `workers` threads (default: this process's CPUs) of a
    pool that ends with the block."""
    count = workers or len(os.sched_getaffinity(0))
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="rompy-tasks-dask") as pool:
        yield {"scheduler": "threads", "pool": pool}
