"""Implementations with one planted defect each, and their honest twins: what the conformance kit must catch.

They are written independently of ``reference`` (their own NumPy code, from the equations), the way a user's
code would be, with a switch ``defect`` that plants one of the bugs users report in these models' issue
trackers:

    StudentS4D (a diagonal SSM per channel, stored half of each conjugate pair, 2 Re readout; zoh):
        "step_reads_state_before_update"   y_t = 2 Re(C x_{t-1}) + D u_t instead of 2 Re(C x_t) + D u_t
        "state_not_carried"                forward ignores initial_state (a chunked prefill restarts at 0)
        "kernel_off_by_one"                K_l = 2 Re(C A_bar^{l+1} B_bar) instead of A_bar^l
        "missing_conjugate_factor"         Re(C x) instead of 2 Re(C x) (the conjugate half forgotten)
        "convolution_sees_the_future"      a circular FFT convolution (no zero padding): y_t reads u_{t+j}
        "init_from_wrong_range"            log dt ~ U[log 1e-3, log 1e-2] instead of U[log dt_min, log dt_max]
        "silent_downcast"                  computes in float32 while claiming float64
    StudentDiscretization:
        "bilinear_sign_flipped"            A_bar = (1 - dt A/2) / (1 + dt A/2): the sign of A flipped
    StudentSelectiveScan:
        "gate_without_nonlinearity"        y * z instead of y * SiLU(z)

``HONEST`` and ``DEFECTS`` list the adapters; ``equivalence_tests/test_conformance_kit.py`` runs the kit on
each and checks that every defect fails a property whose name says what broke, and that no honest twin fails.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import equivalence_tests.conformance as cf

# ------------------------------------------------------------------------------------------------
# A student's S4D
# ------------------------------------------------------------------------------------------------


class StudentS4DLayer:
    """Diagonal SSM per channel (zoh): lambda = -exp(log_A_real) - i A_imag, dt = exp(log_dt),
    a = exp(dt lambda), b = (a - 1) / lambda * B; state x (B, H, N/2) complex; y = 2 Re(sum_n C x) + D u."""

    def __init__(self, params, defect: str | None):
        self.p, self.defect = params, defect
        self.real = np.float32 if defect == "silent_downcast" else np.float64
        self.cplx = np.complex64 if defect == "silent_downcast" else np.complex128

    def system(self):
        p = self.p
        lam = (-np.exp(p.log_A_real) - 1j * p.A_imag).astype(self.cplx)  # (H, N/2)
        dt = np.exp(p.log_dt).astype(self.real)[:, None]  # (H, 1)
        a = np.exp(dt * lam)  # (H, N/2)
        b = (a - 1) / lam * p.B.astype(self.cplx)  # (H, N/2)
        return a, b, p.C.astype(self.cplx), p.D.astype(self.real)

    def read(self, Cx):
        return (1.0 if self.defect == "missing_conjugate_factor" else 2.0) * Cx.real

    def kernel(self, L: int):
        a, b, C, _ = self.system()
        shift = 1 if self.defect == "kernel_off_by_one" else 0
        powers = a[None] ** (np.arange(L)[:, None, None] + shift)  # (L, H, N/2)
        return self.read((C * b)[None] * powers).sum(-1)  # (L, H): the diagonal of (L, H, H)

    def forward(self, u, x0=None):
        u = np.asarray(u, dtype=self.real)  # (B, L, H)
        Bsz, L, H = u.shape
        a, b, C, D = self.system()
        k = self.kernel(L)  # (L, H)
        n = L if self.defect == "convolution_sees_the_future" else 2 * L  # circular when n = L
        y = np.fft.irfft(np.fft.rfft(u, n, axis=1) * np.fft.rfft(k, n, axis=0)[None], n, axis=1)[:, :L]
        y = y + D * u  # (B, L, H)
        if x0 is not None and self.defect != "state_not_carried":
            powers = a[None] ** np.arange(1, L + 1)[:, None, None]  # (L, H, N/2): a^{t+1}
            y = y + self.read((C[None, None] * powers[None] * x0[:, None]).sum(-1))
        # final state: x_{L-1} = a^L x0 + sum_j a^{L-1-j} b u_j
        rev = a[None] ** np.arange(L - 1, -1, -1)[:, None, None]  # (L, H, N/2)
        xL = np.einsum("lhn,blh->bhn", rev * b[None], u.astype(self.cplx))
        if x0 is not None:
            xL = xL + a ** L * x0
        return y.astype(self.real), xL

    def step(self, u_t, x):
        a, b, C, D = self.system()
        u_t = np.asarray(u_t, dtype=self.real)  # (B, H)
        new = a * x + b * u_t[:, :, None]  # (B, H, N/2)
        read_from = x if self.defect == "step_reads_state_before_update" else new
        return self.read((C * read_from).sum(-1)) + D * u_t, new


class StudentS4D(cf.ModelAdapter):
    """The student's S4D through the kit (zoh only, as the student wrote it)."""

    model = "S4D"
    discretizations = ("zoh",)
    defect: str | None = None

    def build(self, ref):
        return StudentS4DLayer(ref.params, self.defect)

    def forward(self, impl, u, *, initial_state=None, integration_timesteps=None):
        return impl.forward(u, initial_state)

    def step(self, impl, u_t, state, *, integration_timesteps=None):
        return impl.step(u_t, state)

    def initial_state(self, impl, batch_size):
        return np.zeros((batch_size,) + impl.p.C.shape, dtype=complex)

    def state_to_reference(self, impl, state):
        return state.reshape(state.shape[0], -1)  # (B, H * N/2), h-major: the reference's layout

    def kernel(self, impl, L):
        k = impl.kernel(L)  # (L, H)
        return np.einsum("lh,hg->lhg", k, np.eye(k.shape[1]))  # (L, H, H)

    def initial_params(self, ref, seed):
        """The student's own initialization: eigenvalues and B of the chosen init (deterministic), C complex
        normal, D normal, log dt log-uniform; drawn from its own generator, not the reference's."""
        import reference.models

        config = ref.config
        fixed = reference.models.S4D(**config, seed=0).params  # the deterministic part, as the paper defines it
        H, N2 = fixed.C.shape
        rng = np.random.default_rng([seed, 2024])
        high = 1e-2 if self.defect == "init_from_wrong_range" else config["dt_max"]
        log_dt = rng.uniform(np.log(config["dt_min"]), np.log(high), size=H)
        C = (rng.normal(size=(H, N2)) + 1j * rng.normal(size=(H, N2))) / np.sqrt(2)
        return SimpleNamespace(log_A_real=fixed.log_A_real, A_imag=fixed.A_imag, B=fixed.B, C=C, log_dt=log_dt,
                               D=rng.normal(size=H))


# ------------------------------------------------------------------------------------------------
# A student's discretization and selective scan
# ------------------------------------------------------------------------------------------------


class StudentDiscretization(cf.DiscretizationAdapter):
    """zoh, bilinear, dirac and mamba for a diagonal A, elementwise from the formulas."""

    methods = ("zoh", "bilinear", "dirac", "mamba")
    defect: str | None = None

    def discretize(self, A, B, dt, method, *, integration_timesteps=None):
        if integration_timesteps is not None:
            raise cf.Unsupported("no event gaps")
        lam, dt = np.asarray(A), np.asarray(dt)  # (N,), () or (N,)
        h = dt * lam / 2
        if method == "bilinear":
            if self.defect == "bilinear_sign_flipped":
                a, g = (1 - h) / (1 + h), dt / (1 + h)
            else:
                a, g = (1 + h) / (1 - h), dt / (1 - h)
        else:
            a = np.exp(dt * lam)
            g = {"zoh": (a - 1) / lam, "dirac": np.ones_like(a), "mamba": dt * np.ones_like(a)}[method]
        return a, g[:, None] * np.asarray(B)


class StudentSelectiveScan(cf.SelectiveScanAdapter):
    """Mamba's selective scan (rule "mamba"), one step after another."""

    methods = ("mamba",)
    defect: str | None = None

    def selective_scan(self, u, dt, A, B, C, D=None, z=None, *, method, integration_timesteps=None,
                       initial_state=None):
        if integration_timesteps is not None:
            raise cf.Unsupported("no event gaps")
        Bsz, L, Dch = u.shape
        x = np.zeros((Bsz, Dch, A.shape[1])) if initial_state is None else np.array(initial_state)  # (B, D, N)
        y = np.empty((Bsz, L, Dch))
        for t in range(L):
            x = np.exp(dt[:, t, :, None] * A) * x + (dt[:, t, :, None] * B[:, t, None, :]) * u[:, t, :, None]
            y[:, t] = (x * C[:, t, None, :]).sum(-1)  # (B, D)
        if D is not None:
            y = y + D * u
        if z is not None:
            y = y * (z if self.defect == "gate_without_nonlinearity" else z / (1 + np.exp(-z)))
        return y, x


# ------------------------------------------------------------------------------------------------
# The catalogue: defect -> (adapter, the properties whose failure names what broke)
# ------------------------------------------------------------------------------------------------


def _variant(base: type, defect: str | None) -> cf.Adapter:
    name = base.__name__ + ("" if defect is None else "_" + defect)
    return type(name, (base,), {"defect": defect, "__module__": __name__})()


DEFECTS = {
    "step_reads_state_before_update": (StudentS4D, {"step_matches_forward"}),
    "state_not_carried": (StudentS4D, {"chunked_forward_matches_one_shot"}),
    "kernel_off_by_one": (StudentS4D, {"kernel_matches_reference", "impulse_response_matches_scipy_dimpulse"}),
    "missing_conjugate_factor": (StudentS4D, {"forward_matches_reference", "impulse_response_matches_scipy_dimpulse"}),
    "convolution_sees_the_future": (StudentS4D, {"forward_is_causal"}),
    "init_from_wrong_range": (StudentS4D, {"init_matches_reference"}),
    "silent_downcast": (StudentS4D, {"forward_matches_reference"}),
    "bilinear_sign_flipped": (StudentDiscretization, {"discretize_matches_scipy_cont2discrete",
                                                      "stable_systems_stay_stable"}),
    "gate_without_nonlinearity": (StudentSelectiveScan, {"selective_scan_matches_reference"}),
}


def defect_adapter(defect: str) -> cf.Adapter:
    return _variant(DEFECTS[defect][0], defect)


def honest_adapters() -> list[cf.Adapter]:
    return [_variant(base, None) for base in (StudentS4D, StudentDiscretization, StudentSelectiveScan)]
