"""One lock for all in-process model compute, and handing freed memory back after it.

llama.cpp (OpenMP, busy-waiting threads) and torch each use every core. Run side by side on a
small machine they oversubscribe the cores and both slow down several-fold, so local inference
steps take turns instead. Remote providers are not affected.
"""

import asyncio
import contextvars
import ctypes
import ctypes.util
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TypeVar

T = TypeVar("T")

LOCAL_COMPUTE = threading.RLock()

# Every local model call runs on this one thread. Through asyncio's default pool the calls landed on
# whichever of its threads was free, and each new calling thread gets a team of OpenMP threads of its
# own in llama.cpp and torch: more threads than cores, spinning and sleeping in turn.
_LOCAL_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-compute")


async def run_local(function: Callable[..., T], *args, **kwargs) -> T:
    """Run a blocking local-model call on the local-compute thread, keeping the caller's context."""
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_LOCAL_EXECUTOR, call)


@cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    return getattr(ctypes.CDLL(name), "malloc_trim", None)  # glibc only


def release_freed_memory() -> None:
    """Return the memory a model call freed to the system (glibc keeps it otherwise).

    Each embedding batch and each llama.cpp call allocates and frees tensors of new shapes; glibc
    kept the freed pages, and the default run's resident size grew by ~0.4 MB per embedding call
    (681 -> 810 MB over 300 calls; with a trim after each call it stayed at 685 MB). A trim costs
    about a millisecond.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
