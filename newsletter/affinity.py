"""A send's connection threads share one processor.

They share Python's interpreter lock too, so they never run Python at the same time
anyway. Spread over several processors, each hand-over of the lock wakes a thread on
another processor, with cold caches: on a 2-core machine, four connections to a local
smtp-sink took about 405 µs of processor time per message spread out and 285 µs on one
processor, and sent about 2,340 against 3,300 messages a second. What the threads do without
the lock (the kernel's share of sending, the database's own work, TLS encryption) then shares
that processor as well; that is the price, and it only shows at rates where the lock is the
limit anyway.

Linux only. Elsewhere, or where the process may use a single processor, nothing changes.
"""

from __future__ import annotations

import os
import sys


def current_processor() -> int | None:
    """The processor the calling thread is on: where the scheduler last found it room."""
    try:
        with open("/proc/thread-self/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
        return int(fields[36])  # the 39th field; the split starts at the 3rd
    except (OSError, ValueError, IndexError):
        return None


def choose() -> int | None:
    """The processor for a send's threads; None leaves them to the scheduler."""
    if sys.platform != "linux":
        return None
    allowed = os.sched_getaffinity(0)
    processor = current_processor()
    return processor if len(allowed) > 1 and processor in allowed else None


def join(processor: int | None) -> None:
    """Move the calling thread, and only it, onto `processor` (None: leave it)."""
    if processor is None or sys.platform != "linux":
        return
    try:
        os.sched_setaffinity(0, {processor})  # 0: on Linux, the calling thread alone
    except OSError:
        return  # taken away from the process meanwhile: running anywhere is still correct
