"""Torch's intra-op thread count, set for a block and restored after.

Why it matters: torch defaults to one intra-op thread per core, and splits even small
operations over them. On a busy machine (the 2-core dev VM running a training job) each split
op waits for a thread whose core another process holds: a 4x256x256 product takes ~190 us
instead of ~15 us on one thread, and ``impala-hybrid eval --run`` went from 5 s to 14-50 s.
Inference on small batches therefore runs on one thread unless told otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, restoring the previous count after (no
    call into torch when it already is ``n``: this wraps every inference call)."""
    previous = torch.get_num_threads()
    if previous == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
