"""Data-parallel training with PyTorch's DistributedDataParallel (gloo on CPU), under ``torchrun``.

``torchrun --nproc-per-node N`` starts N copies of a command and sets ``WORLD_SIZE``, ``RANK`` and a
rendezvous address in each; :func:`init_from_env` joins them into one gloo process group. Then:

- every rank draws the same epoch samples (same seed) and trains on its own share of each batch,
  its loss scaled by the number of ranks; DDP averages the ranks' gradients (sparse embedding
  gradients included: gloo reduces sparse tensors) before every step, so each step equals the
  single-process step on the whole batch, up to the order of floating-point sums, and every replica
  holds the same weights after it;
- rank 0 (the *leader*) does everything else: reading data, evaluating, logging, writing results.
  :func:`broadcast_arrays` hands the leader's arrays to the others.

Outside ``torchrun`` (no ``WORLD_SIZE``, or 1) nothing here changes anything.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def init_from_env() -> bool:
    """Join the process group described by torchrun's environment (gloo); False when not under one."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return True


def active() -> bool:
    """Whether this process trains as one of several DDP ranks."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_leader() -> bool:
    return rank() == 0


def threads_per_process(threads: int) -> int:
    """The CPU threads one rank may use: ``threads`` shared by the ranks on this machine."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if active() else 1
    return max(1, threads // local)


def shutdown() -> None:
    """Leave the process group, together: a rank tearing gloo down while another still talks to it
    can abort the process."""
    if dist.is_available() and dist.is_initialized():
        import gc

        gc.collect()  # drop finished DDP wrappers (their reducers hold the group) first
        dist.barrier()
        dist.destroy_process_group()


def broadcast_object(obj: Any = None) -> Any:
    """The leader's ``obj`` on every rank (pickled; for small things)."""
    if not active():
        return obj
    box = [obj if is_leader() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_arrays(arrays: dict[str, np.ndarray | None] | None = None) -> dict[str, np.ndarray | None]:
    """The leader's named numpy arrays on every rank (``None`` values stay ``None``).

    Only the names, shapes and dtypes are pickled; the data travels as tensors.
    """
    if not active():
        return dict(arrays or {})
    layout = broadcast_object(
        {k: None if v is None else (v.shape, v.dtype.str) for k, v in arrays.items()} if is_leader() else None
    )
    out: dict[str, np.ndarray | None] = {}
    for name, spec in layout.items():
        if spec is None:
            out[name] = None
            continue
        shape, dtype = spec
        array = np.ascontiguousarray(arrays[name]) if is_leader() else np.empty(shape, dtype=np.dtype(dtype))
        dist.broadcast(torch.from_numpy(array), src=0)
        out[name] = array
    return out


def all_reduce_sum(value: float) -> float:
    """The sum of ``value`` over the ranks."""
    if not active():
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor.item())


def share(start: int, stop: int) -> tuple[int, int]:
    """This rank's contiguous part of the batch ``[start, stop)`` (ranks take equal shares, +-1)."""
    size, n = world_size(), stop - start
    r = rank()
    return start + n * r // size, start + n * (r + 1) // size


class _WithPenalty(torch.nn.Module):
    """A network whose ``forward`` returns ``(logits, penalty)``: DDP only hooks ``forward``."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, user_idx: torch.Tensor, item_idx: torch.Tensor, exclude: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.forward_with_penalty(user_idx, item_idx, exclude)


def data_parallel(net: torch.nn.Module):
    """``net.forward_with_penalty``, or under torchrun the same behind DDP (gradients averaged over ranks).

    DDP copies the leader's parameters to every rank when it wraps them, so replicas start equal.
    """
    if not active():
        return net.forward_with_penalty
    from torch.nn.parallel import DistributedDataParallel

    ddp = DistributedDataParallel(_WithPenalty(net))
    ddp.register_comm_hook(None, _average_one_at_a_time)
    return ddp


def _average_one_at_a_time(group, bucket):  # no annotations: DDP checks them at runtime
    """DDP communication hook: average one bucket's gradient with a blocking all-reduce.

    DDP's default hook starts the reduction of every bucket as soon as it is ready without waiting
    for the previous one, so several of gloo's sparse all-reduces run at once; with torch 2.13 that
    corrupts the heap (``malloc(): unaligned tcache chunk detected`` after a few thousand steps,
    reproduced with plain ``dist.all_reduce(..., async_op=True)`` on three sparse tensors at a
    time, never with one at a time). Reducing one bucket at a time gives up overlapping
    communication with the backward pass, which two CPU processes gain little from anyway.
    """
    tensor = bucket.buffer()
    dist.all_reduce(tensor, group=group)
    tensor.div_(dist.get_world_size(group))
    done = torch.futures.Future()
    done.set_result(tensor)
    return done


def check_in_sync(weights: dict[str, np.ndarray]) -> None:
    """Raise if the ranks' trained weights differ (a DDP invariant; cheap next to training)."""
    if not active():
        return
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name]).tobytes())
    digests: list[str | None] = [None] * world_size()
    dist.all_gather_object(digests, digest.hexdigest())
    if len(set(digests)) != 1:
        raise RuntimeError(f"DDP replicas hold different weights after training (rank digests {digests})")
