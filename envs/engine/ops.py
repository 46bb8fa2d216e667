"""Batched gathers and scatters for the step, and its constants.

Every helper works along dim 1 of ``[B, ...]`` tensors, one row per copy, so the step needs no
Python loop over copies and `torch.compile` can take it whole.
"""

from __future__ import annotations

import torch

FAR = 1.0e7  # metres: "no obstacle ahead"
MOVING_TAIL_SPEED = 2.0  # m/s: a lane whose last vehicle moves this fast is not spilling back
DT = 1.0  # seconds per step


# inductor's op that stores a tensor in a buffer of its own; set by `use_inductor_buffers`
_REALIZE = None


def use_inductor_buffers() -> None:
    """Let a compiled step keep its lane-level intermediates in buffers (see `materialise`).

    Imports ``torch._inductor`` (about a second), so only a simulator that compiles calls it.
    The op lives in inductor's test operators (torch is pinned); should a torch release drop it,
    the step compiles as before, only slower."""
    global _REALIZE
    try:
        import torch._inductor.test_operators  # noqa: F401  (registers _inductor_test.realize)

        _REALIZE = torch.ops._inductor_test.realize
    except (ImportError, AttributeError):
        _REALIZE = None


def materialise(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Under torch.compile, compute each tensor once into its own buffer.

    Inductor otherwise inlines a pointwise result into every loop that reads it, so a head's
    chain of gathers (lane -> head slot -> its trip, leg and movements) is recomputed in each of
    the twenty-odd lane loops of the step. Stored once, each loop reads one value instead:
    hangzhou_4x4, B=64, distinct demand samples per copy, 2 threads: 1.01 -> 0.83 ms per step
    (grid_16x8: 8.1 -> 6.2 ms), identical results. Eager code computes each value once anyway.
    CPU only: on a GPU, recomputing a gather may well be cheaper than a round trip through
    memory, and it has not been measured there."""
    if _REALIZE is None or not torch.compiler.is_compiling() or tensors[0].device.type != "cpu":
        return tensors
    return tuple(_REALIZE(x) for x in tensors)


def take(source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Batched gather along dim 1: ``out[b, ...] = source[b, index[b, ...]]``."""
    if index.dim() == 2:  # most calls: no reshapes to dispatch (each costs an eager step ~2 us)
        return torch.gather(source, 1, index)
    batch = source.shape[0]
    return torch.gather(source, 1, index.reshape(batch, -1)).reshape(index.shape)


def take_sample(table: torch.Tensor, sample: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather from a table shared by copies: ``out[b, ...] = table[sample[b], index[b, ...]]``.

    `table` is ``[K, N, ...]`` (one row per demand sample, `envs.scenario.demand.Demand`),
    `sample` ``[B]`` the row of each copy. The table is read through flat row offsets, so no
    ``[B, N]`` copy is made; an integer table (stored narrow) comes back as int64, the dtype
    the step indexes and stores with (same values)."""
    width = table.shape[1]
    flat = table.reshape(table.shape[0] * width, *table.shape[2:])
    rows = sample.view(-1, *([1] * (index.dim() - 1))) * width + index
    out = flat[rows]
    return out if out.is_floating_point() else out.to(torch.int64)


_MASK32 = 0xFFFFFFFF


def unit_hash(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A reproducible number in [0, 1) for each pair of integer tensors (a, b), float32.

    A counter-based draw instead of a random generator: the step stays a pure function of
    its inputs (compiled equals eager, any batch layout gives the same draws) and needs no
    generator state. The pair is spread over 32 bits and mixed with murmur3's finaliser; the
    top 24 bits become the float (exact in float32). int64 products wrap, which keeps the low
    32 bits that the mask takes. Narrower integers are widened first, so an int32 trip id
    draws what an int64 one does."""
    a, b = a.to(torch.int64), b.to(torch.int64)
    x = (a * 0x9E3779B1 + b * 0x85EBCA77 + 0x27D4EB2F) & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & _MASK32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & _MASK32
    x = x ^ (x >> 16)
    return (x >> 8).to(torch.float32) * (1.0 / (1 << 24))


def put(target: torch.Tensor, index: torch.Tensor, value) -> torch.Tensor:
    """Batched scatter along dim 1 into `target` itself (indices unique or pointing at scratch).

    Used on tensors the step created, and on the input state's fields only in place mode.
    Under torch.compile it is written as ``index_put_``: both are functionalised, but inductor
    turns only ``index_put`` back into an in-place write; a ``scatter`` becomes a copy of the
    whole array plus the scatter, i.e. one full pass per write. Eager, ``scatter_`` is the
    faster of the two (grid_4x4, B=16: 2.55 vs 3.24 ms per step). Same values either way.

    Eager, a number is scattered as it is and a tensor is converted or expanded only when it
    has to be: an eager step is ~800 small torch calls of ~2-3 us each, and `put`'s were ~190."""
    if not torch.compiler.is_compiling():
        if isinstance(value, torch.Tensor):
            if value.dtype != target.dtype:
                value = value.to(target.dtype)
            if value.shape != index.shape:
                value = value.expand_as(index)
        return target.scatter_(1, index, value)
    if not isinstance(value, torch.Tensor):
        value = torch.full_like(index, value, dtype=target.dtype)
    value = value.to(target.dtype).expand_as(index)
    rows = torch.arange(index.shape[0], device=index.device).unsqueeze(1).expand_as(index)
    return target.index_put_((rows, index), value)


def put_copy(target: torch.Tensor, index: torch.Tensor, value) -> torch.Tensor:
    """Functional batched scatter: a new tensor, `target` untouched."""
    return put(target.clone(), index, value)


def prefer_open(usable: torch.Tensor, closed: torch.Tensor) -> torch.Tensor:
    """Among usable lanes (last dim), keep the open ones when there is any; else all."""
    open_ok = usable & ~closed
    return torch.where(open_ok.any(-1, keepdim=True), open_ok, usable)
