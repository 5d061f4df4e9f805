"""Backend tables: which kernel runs for each registered op, and why.

Each op (``address``, ``scan``, ``step``) has a priority-ordered list of backends. A backend is an object with a
``name``, its tuning knobs as (frozen) fields, and ``supports(problem) -> None | reason``: ``None`` means it runs
this problem, a string says why not. The forward, the backward and the decode of an op all ask the same
``supports``, so they never disagree about which geometry a kernel takes.

A *problem* is a frozen description built once per call from the op's flat arguments (device, dtypes, sizes,
geometry); the choice and the backends read it instead of re-deriving the geometry (the kernel launchers still
take plain sizes, so they can be called on their own).

Choosing: the first backend in priority order that supports the problem, unless a backend is forced with
:func:`use_backend` (a context manager, per thread and per async task). A forced backend that refuses the problem
is an error naming the reason, never a silent fall-back. :func:`explain` reports, for a problem, every backend's
verdict and the one chosen.

The ``RAMNET_BACKENDS`` environment variable (``"scan=recurrent,address=reference"``) forces backends for a whole
process, for A/B runs; it is read and validated when an op first chooses, never at import.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass
from typing import Iterator

ENV_VAR = "RAMNET_BACKENDS"

_forced: contextvars.ContextVar[dict] = contextvars.ContextVar("ramnet_forced_backends", default={})


class Backend:
    """Base of every backend: a ``name`` and ``supports``. Subclasses are frozen dataclasses whose fields are
    the backend's tuning knobs (``dataclasses.replace(backend, num_warps=2)`` makes a variant to force)."""

    name: str = "backend"

    def supports(self, problem) -> str | None:  # pragma: no cover - every backend overrides it
        raise NotImplementedError


@dataclass(frozen=True)
class Choice:
    """What :func:`explain` returns: the backend that runs, and every backend's verdict in priority order."""

    op: str
    chosen: Backend | None   # None: a forced backend refuses this input (``error`` says why)
    verdicts: tuple[tuple[str, str | None], ...]
    forced: bool
    error: str | None = None

    def __str__(self) -> str:
        head = self.error if self.chosen is None else self.chosen.name + (" (forced)" if self.forced else "")
        lines = [f"{self.op}: {head}"]
        lines += [f"  {name}: {'supports it' if why is None else why}" for name, why in self.verdicts]
        return "\n".join(lines)


class OpBackends:
    """The priority list of one op's backends."""

    def __init__(self, op: str, backends: list[Backend]):
        self.op = op
        self.backends = list(backends)

    def names(self) -> list[str]:
        return [b.name for b in self.backends]

    def get(self, name: str) -> Backend:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise ValueError(f"unknown {self.op} backend {name!r}; {self.op} backends: {', '.join(self.names())}")

    def _forced(self) -> Backend | None:
        forced = _forced.get().get(self.op)
        if forced is None:
            forced = _env_forced().get(self.op)
        if forced is None:
            return None
        return forced if isinstance(forced, Backend) else self.get(forced)

    def choose(self, problem) -> Backend:
        """The backend that runs ``problem``."""
        forced = self._forced()
        if forced is not None:
            why = forced.supports(problem)
            if why is not None:
                raise ValueError(f"the forced {self.op} backend {forced.name!r} cannot run this input: {why}")
            return forced
        for backend in self.backends:
            if backend.supports(problem) is None:
                return backend
        raise RuntimeError(f"no {self.op} backend supports {problem}")  # the reference supports every problem

    def explain(self, problem) -> Choice:
        """Every backend's verdict and the one that runs; a forced backend that refuses is reported, not raised."""
        verdicts = tuple((b.name, b.supports(problem)) for b in self.backends)
        forced = self._forced()
        try:
            return Choice(self.op, self.choose(problem), verdicts, forced is not None)
        except ValueError as error:
            return Choice(self.op, None, verdicts, True, str(error))

    def check_member(self, backend: Backend) -> Backend:
        """``backend`` must be one of this op's backend kinds (a variant with other knobs is fine)."""
        kinds = tuple(type(b) for b in self.backends)
        if not isinstance(backend, kinds):
            raise TypeError(f"{type(backend).__name__} is not a {self.op} backend; {self.op} backends: "
                            f"{', '.join(k.__name__ for k in kinds)}")
        return backend


REGISTRY: dict[str, OpBackends] = {}


def register(table: OpBackends) -> OpBackends:
    REGISTRY[table.op] = table
    return table


@contextlib.contextmanager
def use_backend(**choices: str | Backend) -> Iterator[None]:
    """Force backends inside a block, e.g. ``with use_backend(scan="recurrent", address="reference"):``. A value
    is a backend name or a backend object (to change its knobs: ``dataclasses.replace(backend, num_warps=2)``).
    Applies to the calls made inside the block, and in eager mode to the backward of the ops called there (even
    when the backward runs after the block or on autograd's device threads). Under torch.compile the backward
    chooses when it runs, under the ``use_backend`` active then (the forward's was read at trace time)."""
    _load_tables()
    for op, choice in choices.items():
        if op not in REGISTRY:
            raise ValueError(f"unknown op {op!r} for use_backend; ops: {', '.join(sorted(REGISTRY))}")
        if isinstance(choice, str):
            REGISTRY[op].get(choice)  # validates the name now, not at the first call
        elif isinstance(choice, Backend):
            REGISTRY[op].check_member(choice)
        else:
            raise TypeError(f"use_backend({op}=...) takes a backend name or a Backend, got {type(choice).__name__}")
    token = _forced.set({**_forced.get(), **choices})
    try:
        yield
    finally:
        _forced.reset(token)


def forced_snapshot() -> dict:
    """The backends forced here and now (by :func:`use_backend`), for an op's ``setup_context`` to carry to its
    backward: autograd may run the backward on another thread (CUDA) and after the ``use_backend`` block."""
    return dict(_forced.get())


@contextlib.contextmanager
def forced_scope(snapshot: dict) -> Iterator[None]:
    """Re-enter the forced backends of a :func:`forced_snapshot` (used around an op's backward)."""
    token = _forced.set(snapshot)
    try:
        yield
    finally:
        _forced.reset(token)


def list_backends(op: str | None = None) -> dict[str, list[str]]:
    """The backend names of each op (or of ``op``), in priority order."""
    _load_tables()
    return {name: table.names() for name, table in REGISTRY.items() if op is None or name == op}


_env_cache: dict[str, tuple[str, dict]] = {}


def _env_forced() -> dict:
    """``RAMNET_BACKENDS`` parsed (and validated) on first use and whenever its value changes."""
    raw = os.environ.get(ENV_VAR, "")
    cached = _env_cache.get("value")
    if cached is not None and cached[0] == raw:
        return cached[1]
    parsed = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        op, sep, name = item.partition("=")
        if not sep or op.strip() not in REGISTRY:
            raise ValueError(f"{ENV_VAR} must look like 'scan=recurrent,address=reference' with ops "
                             f"{sorted(REGISTRY)}, got {raw!r}")
        if op.strip() in parsed:
            raise ValueError(f"{ENV_VAR} names the {op.strip()} backend twice: {raw!r}")
        REGISTRY[op.strip()].get(name.strip())
        parsed[op.strip()] = name.strip()
    _env_cache["value"] = (raw, parsed)
    return parsed


def _load_tables() -> None:
    """Import the modules that register the tables (they are light: kernels load on first CUDA use)."""
    from .address import backends as _address  # noqa: F401
    from .memory import backends as _memory  # noqa: F401
