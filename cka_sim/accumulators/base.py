"""Accumulator state declared once; reset, merge, all_reduce and (de)serialisation derived from it.

An accumulator (:class:`~cka_sim.StreamingCKA`, :class:`~cka_sim.StreamingCKAMatrix`,
:class:`~cka_sim.MinibatchCKA`) lists its state in ``_STATE``: attribute name -> reduction.
Everything that handles the whole state (:meth:`Accumulator.reset`, :meth:`~Accumulator.merge`,
:meth:`~Accumulator.all_reduce`, :meth:`~Accumulator.state_dict`,
:meth:`~Accumulator.load_state_dict`) reads that table and nothing else, so a new piece of state
is one line. The reductions:

- :class:`Sum`: float64 arrays added (``None`` before the first batch);
- :class:`Count`: integers added;
- :class:`Agree`: layer names and layout flags, which must be equal on both sides;
- :class:`CentredMoments`: a :class:`~cka_sim._core.moments.Moments`, moved to the shared mean and then
  added (Chan, Golub & LeVeque 1979).

``update`` is each estimator's own: prepare the batch (:mod:`cka_sim._core.check`, :func:`cka_sim._core.prepare.centre`),
form its statistics, and reduce them into the state with the same reductions.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._core.backend import is_torch, namespace, to_numpy
from .._core.check import check_accumulator_batch, check_names, check_same_place
from .._core.moments import Moments, merge_moments
from .._core.prepare import Centred, centre

_FORMAT_VERSION = 1


class Reduction:
    """How one piece of state starts, combines, travels and is saved."""

    def default(self) -> Any:
        return None

    def merge(self, a: Any, b: Any, what: str) -> Any:
        raise NotImplementedError

    def save(self, key: str, value: Any, out: dict[str, Any]) -> None:
        if value is not None:
            out[key] = value

    def load(self, key: str, state: dict[str, Any]) -> Any:
        return state.get(key)

    def signature(self, value: Any) -> Any:
        """What every process of an ``all_reduce`` must agree on (``None``: nothing)."""
        return None


@dataclass(frozen=True)
class Sum(Reduction):
    """Float64 arrays of one shape, added."""

    def merge(self, a: Any, b: Any, what: str) -> Any:
        return b if a is None else a if b is None else a + b

    def signature(self, value: Any) -> Any:
        return None if value is None else tuple(int(s) for s in value.shape)


@dataclass(frozen=True)
class Count(Reduction):
    """An integer count, added."""

    def default(self) -> int:
        return 0

    def merge(self, a: Any, b: Any, what: str) -> int:
        return int(a) + int(b)

    def load(self, key: str, state: dict[str, Any]) -> int:
        return int(state[key])


@dataclass(frozen=True)
class Agree(Reduction):
    """A layout value (layer names, a flag) that both sides of a merge must share."""

    label: str
    kind: type = list

    def default(self) -> Any:
        return self.kind()

    def merge(self, a: Any, b: Any, what: str) -> Any:
        if self.kind is list:
            check_names(a, b, f"the other accumulator's {self.label}")
        elif a != b:
            raise ValueError(f"{what}: the accumulators differ in {self.label} ({a!r} and {b!r})")
        return a

    def save(self, key: str, value: Any, out: dict[str, Any]) -> None:
        out[key] = list(value) if self.kind is list else value

    def load(self, key: str, state: dict[str, Any]) -> Any:
        value = state[key]
        return [str(s) for s in value] if self.kind is list else self.kind(value)

    def signature(self, value: Any) -> Any:
        return list(value) if self.kind is list else value


@dataclass(frozen=True)
class CentredMoments(Reduction):
    """A :class:`~cka_sim._core.moments.Moments`: shift to the shared mean, then add."""

    def merge(self, a: Any, b: Any, what: str) -> Any:
        return merge_moments(a, b, what)

    def save(self, key: str, value: Any, out: dict[str, Any]) -> None:
        if value is not None:
            out.update(value.to_dict())

    def load(self, key: str, state: dict[str, Any]) -> Any:
        return Moments.from_dict(state) if "n" in state else None

    def signature(self, value: Any) -> Any:
        if value is None:
            return None
        return {
            "debiased": value.debiased,
            "pairs": value.pairs,
            "widths": value.widths,
            "eps": value.eps,  # the products' precision (every process feeds the same dtypes)
        }

    @staticmethod
    def absorb(state: Moments | None, batch: Moments, what: str) -> Moments:
        """``state`` with a fresh batch's statistics added (the batch's arrays are reused)."""
        if state is None:
            return batch
        check_same_place(state.mean[0], batch.mean[0], what)
        return state.combined(batch, state.namespace(), reuse_other=True)


class Accumulator:
    """Base of the accumulators: ``_STATE`` declares the state, the rest is derived from it.

    Subclasses set ``_STATE`` (attribute -> :class:`Reduction`), ``_SETTINGS`` (constructor
    arguments a state must share to be merged or loaded), ``_EXACT`` (how a batch is prepared,
    see :meth:`Accumulator.prepare`) and define ``n_examples``, ``update``, ``compute``.
    """

    _STATE: ClassVar[dict[str, Reduction]]
    _SETTINGS: ClassVar[tuple[str, ...]] = ("debiased",)
    _EXACT: ClassVar[bool] = True

    n_examples: int

    def reset(self) -> Any:
        """Forget all data seen (and the layer names).

        Returns
        -------
        object
            The accumulator itself, so that calls chain.
        """
        for attr, reduction in self._STATE.items():
            setattr(self, attr, reduction.default())
        return self

    def prepare(self, activations: Any, name: str = "activations") -> Any:
        """Validate and prepare one layer's activations (m, ...) as :meth:`update` would.

        :meth:`update` accepts the result in place of the activations.
        :func:`~cka_sim.torch.compare_models` prepares each layer output in its forward hook, so
        that the prepared batch replaces the copy that protects it from later in-place
        operations: a centred copy for the exact accumulators, the layer's (m, m) Gram for
        :class:`~cka_sim.MinibatchCKA`.

        Parameters
        ----------
        activations : array_like or torch.Tensor, shape (m, ...)
            One batch of one layer, one row per example (flattened to (m, p)).
        name : str, default "activations"
            The layer's name, for error messages.

        Returns
        -------
        object
            The prepared batch; pass it to :meth:`update` instead of the activations.

        Raises
        ------
        TypeError
            If ``activations`` is not numeric.
        ValueError
            If it has no rows or features, or NaN or infinite values (NumPy input; torch input
            is checked once, in :meth:`compute`).
        """
        x = check_accumulator_batch(activations, name, exact=self._EXACT)
        return self._prepared(x, namespace(x))

    def _prepared(self, x: Any, xp: Any) -> Any:
        """What :meth:`prepare` hands back for later: a copy of the layer with its centre (the
        copy keeps later in-place operations on the caller's array out of the statistics)."""
        unit = centre(x, xp)
        return Centred(xp.asarray(x, copy=True), unit.centre, unit.constant)

    def _flush(self) -> None:
        """Form the statistics of any rows held back for a larger block (none by default; the
        exact accumulators gather small batches, see :mod:`cka_sim.accumulators.rowbuffer`)."""

    # -- derived from _STATE -------------------------------------------------------------------
    def _check_compatible(self, other: Any, what: str) -> None:
        if type(other) is not type(self):
            raise TypeError(f"cannot {what} a {type(other).__name__} into a {type(self).__name__}")
        for setting in self._SETTINGS:
            mine, theirs = getattr(self, setting), getattr(other, setting)
            if mine != theirs:
                raise ValueError(
                    f"cannot {what} accumulators with {setting}={mine} and {setting}={theirs}"
                )

    def merge(self, other: Any) -> Any:
        """Add the statistics of ``other`` (disjoint data, same layers and settings).

        Parameters
        ----------
        other : object
            An accumulator of the same class and settings, fed other examples.

        Returns
        -------
        object
            The accumulator itself, so that calls chain.

        Raises
        ------
        TypeError
            If ``other`` is of another class.
        ValueError
            If its settings or layers differ; ``self`` is then left as it was.
        """
        self._check_compatible(other, "merge")
        self._flush()
        other._flush()
        if other.n_examples == 0:
            return self
        what = f"{type(self).__name__}.merge"
        if self.n_examples == 0:
            merged = {attr: getattr(other, attr) for attr in self._STATE}
        else:  # every field first, so that a refused merge leaves ``self`` as it was
            merged = {
                attr: r.merge(getattr(self, attr), getattr(other, attr), what)
                for attr, r in self._STATE.items()
            }
        for attr, value in merged.items():
            setattr(self, attr, list(value) if isinstance(value, list) else value)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Return the state as a flat dict of arrays and plain values.

        Returns
        -------
        dict
            The class name, the format version, the settings, the array library the data came
            from (``"library"``) and the statistics: plain values (str, int, float, bool, lists)
            and arrays. Where torch is installed the arrays are torch tensors whatever the data
            (CPU tensors sharing memory with a NumPy-fed state), so that ``torch.save`` /
            ``torch.load`` with its default ``weights_only=True`` round-trips it; ``np.savez``
            / ``np.load`` (``allow_pickle=False``) round-trip it too. :meth:`load_state_dict`
            restores the library the data came from.
        """
        self._flush()
        out: dict[str, Any] = {"kind": type(self).__name__, "format_version": _FORMAT_VERSION}
        out.update({setting: getattr(self, setting) for setting in self._SETTINGS})
        for attr, reduction in self._STATE.items():
            reduction.save(attr.lstrip("_"), getattr(self, attr), out)
        out["library"] = "numpy"
        if any(is_torch(v) for v in out.values()):
            out["library"] = "torch"
        elif importlib.util.find_spec("torch") is not None:  # weights_only refuses NumPy arrays
            import torch

            for key, value in out.items():
                if isinstance(value, np.ndarray):
                    out[key] = torch.from_numpy(value)
                elif isinstance(value, np.floating):  # a 0-dim sum, e.g. Σ r²
                    out[key] = torch.tensor(float(value), dtype=torch.float64)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> Any:
        """Restore a state from :meth:`state_dict` (arrays may be NumPy or torch).

        Parameters
        ----------
        state : dict
            What :meth:`state_dict` returned, possibly saved and loaded.

        Returns
        -------
        object
            The accumulator itself, so that calls chain.

        Raises
        ------
        ValueError
            If the state is of another class or format version, or its settings differ from
            this accumulator's (the message says which to use).
        """
        kind = type(self).__name__
        if state.get("kind") != kind:
            raise ValueError(
                f"this state_dict is from {state.get('kind')!r}, not {kind}; load it into a "
                f"{state.get('kind')} instead"
            )
        if int(state.get("format_version", -1)) != _FORMAT_VERSION:
            raise ValueError(f"unsupported {kind} state format {state.get('format_version')!r}")
        for setting in self._SETTINGS:
            if setting not in state or _plain(state[setting]) != getattr(self, setting):
                raise ValueError(
                    f"the state_dict has {setting}={_plain(state.get(setting))} but this {kind} "
                    f"has {setting}={getattr(self, setting)}; create the {kind} with "
                    f"{setting}={_plain(state.get(setting))} to load it"
                )
        state = _in_library(state)
        loaded = {attr: r.load(attr.lstrip("_"), state) for attr, r in self._STATE.items()}
        self.reset()  # also drops any rows held back (see _flush)
        for attr, value in loaded.items():
            setattr(self, attr, value)
        return self

    def all_reduce(self, group: Any = None) -> Any:
        """Combine the accumulators of every process of a ``torch.distributed`` group, in place.

        Afterwards every process holds the statistics of the union of all processes' data. Call
        it on every process of ``group`` (it is a collective); see :mod:`cka_sim.accumulators.distributed`.

        Parameters
        ----------
        group : torch.distributed.ProcessGroup, optional
            The group; by default the whole world.

        Returns
        -------
        object
            The accumulator itself, so that calls chain.

        Raises
        ------
        ValueError
            If the processes disagree on the layers or settings.
        """
        from . import distributed

        self._flush()
        empty = self.n_examples == 0
        local = None
        if not empty:
            local = {a: r.signature(getattr(self, a)) for a, r in self._STATE.items()}
        agreed = distributed.agree(local, group, "layers and settings")
        if agreed is None:
            return self  # no process saw any data
        if empty:
            self.reset()
            for attr, r in self._STATE.items():
                if isinstance(r, Agree):
                    setattr(self, attr, r.load(attr, {attr: agreed[attr]}))
                elif isinstance(r, Sum):
                    setattr(self, attr, np.zeros(agreed[attr]))
        self._all_reduce_sums(group)
        for attr, r in self._STATE.items():
            if isinstance(r, CentredMoments):
                setattr(
                    self,
                    attr,
                    distributed.all_reduce_moments(getattr(self, attr), agreed[attr], group),
                )
        return self

    def _all_reduce_sums(self, group: Any) -> None:
        from .distributed import all_reduce_sum

        sums = [a for a, r in self._STATE.items() if isinstance(r, Sum)]
        counts = [a for a, r in self._STATE.items() if isinstance(r, Count)]
        if not sums and not counts:
            return
        like = getattr(self, sums[0]) if sums else None
        packed = np.array([getattr(self, a) for a in counts], dtype=np.float64)
        reduced = all_reduce_sum([getattr(self, a) for a in sums] + [packed], group, like)
        for attr, value in zip(sums, reduced, strict=False):
            setattr(self, attr, value)
        for attr, value in zip(counts, to_numpy(reduced[-1]), strict=True):
            setattr(self, attr, round(float(value)))


def _in_library(state: dict[str, Any]) -> dict[str, Any]:
    """The state's arrays in the library its data came from (``"library"``: a NumPy-fed
    state's tensors become NumPy arrays, a torch-fed state's NumPy arrays from ``np.savez``
    CPU tensors); states saved before the key was written are returned as they are."""
    library = _plain(state.get("library"))
    if library not in ("numpy", "torch"):
        return state
    out = dict(state)
    for key, value in state.items():
        if library == "numpy" and is_torch(value):
            out[key] = to_numpy(value)
        elif library == "torch" and isinstance(value, np.ndarray) and value.dtype.kind == "f":
            import torch

            out[key] = torch.from_numpy(value)
    return out


def _plain(value: Any) -> Any:
    """A 0-dim array (from ``np.savez`` or ``torch.save``) as a Python value."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value
