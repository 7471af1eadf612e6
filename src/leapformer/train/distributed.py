"""Multi-process data-parallel training under ``torchrun`` (DistributedDataParallel).

``torchrun --standalone --nproc_per_node N -m leapformer.cli lra ...`` starts N
processes with ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` in their environment.
:func:`init_distributed` reads them, joins the process group (``gloo`` when
the device is the CPU, ``nccl`` when it is CUDA) and returns a
:class:`DistInfo`. Without those variables (or with ``WORLD_SIZE=1``) it
returns the single-process :class:`DistInfo` and creates no process group,
and every helper here is then a no-op, so single-process runs are unchanged.

Batch semantics: the task's ``get_batch(i)`` returns the *global* batch (the
profile's batch size) and :func:`shard_batch` gives rank ``r`` its contiguous
slice ``r`` of ``N`` along dimension 0 (sizes differ by at most one when the
batch size is not a multiple of ``N``). DDP averages the ranks' gradients, so
one step still consumes exactly one global batch and the learning rate and
step count mean what they mean in a single process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files, logs and shows progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """More than one process: collectives and DDP are in use."""
        return self.world_size > 1


def torchrun_env() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's environment, else ``None``."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return rank, world, local


def init_distributed(device: str | torch.device | None = None) -> DistInfo:
    """Join the torchrun process group, if launched by torchrun with more than one process.

    ``device``: ``None`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU;
    ``"cuda"`` means ``cuda:LOCAL_RANK``. The backend is ``nccl`` for CUDA, ``gloo`` otherwise.
    """
    env = torchrun_env()
    rank, world, local = env if env is not None else (0, 1, 0)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local)
    info = DistInfo(rank=rank, world_size=world, local_rank=local, device=device)
    if not info.enabled:
        return info
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                rank=rank, world_size=world)
    return info


def cleanup() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.enabled:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """``DistributedDataParallel(model)`` with more than one process, else ``model`` itself.

    DDP broadcasts rank 0's parameters and buffers, so every rank starts from the same weights.
    """
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (whose ``state_dict`` has no ``module.`` prefix)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def no_sync(model: nn.Module):
    """DDP's ``no_sync()`` (skip the gradient all-reduce of an accumulation micro-batch)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.no_sync() if isinstance(model, DistributedDataParallel) \
        else contextlib.nullcontext()


def batch_len(batch: Any) -> int:
    """Size of dimension 0 shared by every tensor of a (nested) batch."""
    sizes = set()

    def visit(x):
        if isinstance(x, Tensor):
            sizes.add(x.shape[0])
        elif isinstance(x, Mapping):
            for v in x.values():
                visit(v)
        elif isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
            for v in x:
                visit(v)

    visit(batch)
    if len(sizes) != 1:
        raise ValueError(f"a batch needs tensors of one size along dimension 0, got "
                         f"{sorted(sizes) or 'no tensors'}")
    return sizes.pop()


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous share of ``n`` items (as tensor_split)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of {world_size}")
    q, r = divmod(n, world_size)
    start = rank * q + min(rank, r)
    return start, start + q + (rank < r)


def shard_batch(batch: Any, rank: int, world_size: int) -> Any:
    """Rank ``rank``'s slice of a global batch: every tensor (in nested tuples, lists,
    dicts) cut along dimension 0; other leaves are kept. Identity when ``world_size == 1``."""
    if world_size == 1:
        return batch
    start, stop = shard_bounds(batch_len(batch), rank, world_size)

    def cut(x):
        if isinstance(x, Tensor):
            return x[start:stop]
        if isinstance(x, Mapping):
            return type(x)({k: cut(v) for k, v in x.items()})
        if isinstance(x, tuple) and hasattr(x, "_fields"):  # named tuple
            return type(x)(*map(cut, x))
        if isinstance(x, (tuple, list)):
            return type(x)(map(cut, x))
        return x

    return cut(batch)


def all_reduce_sum(values: Sequence[float], info: DistInfo) -> list[float]:
    """Element-wise sum over ranks (float64; exact for counts below 2**53)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean over ranks of one scalar (e.g. a training loss)."""
    if not info.enabled:
        return value
    return all_reduce_sum([value], info)[0] / info.world_size


def all_gather_object(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
