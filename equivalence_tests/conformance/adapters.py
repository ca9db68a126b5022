"""The adapter base classes: how the kit talks to an implementation it did not write.

Arrays cross an adapter as NumPy arrays: the kit hands it float64 / complex128 arrays and takes back whatever the
implementation computed (any array-like that ``numpy.asarray`` accepts, a torch tensor included); the adapter
converts to and from its own framework. Every class attribute has a default, so an adapter states only what
differs. A method that the implementation cannot serve for a given input raises ``Unsupported(reason)``; the
properties that need that input then report ``skip`` with the reason.

Required methods raise ``NotImplementedError`` here; the optional ones of ``ModelAdapter`` are absent from the
base class, and a property that needs a missing one reports ``skip``.
"""

from __future__ import annotations

from typing import ClassVar


class Unsupported(Exception):
    """Raised by an adapter method for an input its implementation cannot take (the reason is reported)."""


class AdapterError(ValueError):
    """An adapter the kit cannot run: the message says, in one line, what to fix."""


class Adapter:
    """What every adapter has."""

    #: The precision the implementation computes in ("float64", "float32", "bfloat16", "float16", ...): it selects
    #: the row of the tolerance table (``equivalence_tests.tolerances.TOLERANCES``).
    dtype: ClassVar[str] = "float64"
    #: Property name -> why it is expected to fail (a documented deviation): it reports "xfail" (or "xpass").
    expected_failures: ClassVar[dict[str, str]] = {}
    #: The methods a subclass must define.
    required: ClassVar[tuple[str, ...]] = ()

    @property
    def name(self) -> str:
        return type(self).__name__


class DiscretizationAdapter(Adapter):
    """A discretization function with the signature of ``reference.discretize``."""

    #: The rules the implementation claims (names of ``reference.DISCRETIZATIONS``).
    methods: ClassVar[tuple[str, ...]] = ("zoh",)
    #: True when it also takes a dense ``(N, N)`` A (otherwise only a diagonal ``(N,)`` A is passed).
    dense: ClassVar[bool] = False
    required = ("discretize",)

    def discretize(self, A, B, dt, method, *, integration_timesteps=None):
        """``A (N,)`` diagonal (or ``(N, N)`` dense when ``dense``), ``B (N, H)``, ``dt`` a scalar or ``(N,)``;
        ``integration_timesteps (L,)`` for event rules -> ``(A_bar, B_bar)`` as ``reference.discretize``."""
        raise NotImplementedError


class LinearScanAdapter(Adapter):
    """The diagonal recurrence ``x_k = a_k * x_{k-1} + b_k`` over axis 1 (``reference.linear_scan``)."""

    required = ("linear_scan",)
    #: Whether the implementation takes complex ``a`` and ``b`` (otherwise only real ones are drawn).
    complex_values: ClassVar[bool] = True

    def linear_scan(self, a, b, initial_state=None):
        """``a, b (B, L, F)``, ``initial_state (B, F)`` or None -> ``(x (B, L, F), final_state (B, F))``."""
        raise NotImplementedError


class SelectiveScanAdapter(Adapter):
    """Mamba's selective SSM (``reference.selective_scan``), batch-first."""

    #: The rules the implementation claims.
    methods: ClassVar[tuple[str, ...]] = ("mamba",)
    required = ("selective_scan",)

    def selective_scan(self, u, dt, A, B, C, D=None, z=None, *, method, integration_timesteps=None,
                       initial_state=None):
        """``u, dt, z (B, L, D)``, ``A (D, N)``, ``B, C (B, L, N)``, ``D (D,)`` -> ``(y (B, L, D), final_state
        (B, D, N) or None)``."""
        raise NotImplementedError


class ModelAdapter(Adapter):
    """A whole model (the SSM layer of ``reference.models.<model>``).

    Required: ``build(ref)`` and ``forward``. Optional (define them to enable their properties): ``step``,
    ``initial_state``, ``state_to_reference``, ``initial_params``, and for the kit's extra checks ``kernel(impl,
    L)`` and ``frequency_response(impl, w)`` (LTI models, in the reference's layout) and ``grad_input(impl, u,
    grad_y)`` (the gradient of ``sum(grad_y * y)`` with respect to ``u``, for differentiable implementations).
    """

    #: A name of ``reference.models`` ("S4", "S4D", "S5", "LRU", "Centaurus", "Mamba", "RGLRU", "S7").
    model: ClassVar[str] = ""
    #: The rules the implementation claims (a subset of the reference model's ``discretizations``); empty means
    #: the reference model's default rule only.
    discretizations: ClassVar[tuple[str, ...]] = ()
    #: Constructor options the kit must hold fixed (e.g. ``{"init": "lin"}``); the others are drawn.
    options: ClassVar[dict] = {}
    required = ("build", "forward")

    def build(self, ref):
        """The implementation, loaded with exactly ``ref.params`` (``ref`` is a reference model)."""
        raise NotImplementedError

    def forward(self, impl, u, *, initial_state=None, integration_timesteps=None):
        """``u (B, L, H)`` -> ``(y (B, L, H), state)``: the state is opaque (anything the implementation takes back
        as ``initial_state``), or None."""
        raise NotImplementedError
