"""Why each failure in the peers' report happens: a real defect of the peer (what the correct behaviour is, with the
equation, and the peer's file and version) or a documented deviation. ``python -m equivalence_tests.peers`` puts
each text under its failure, and exits 1 if a failure has none. Equations: ``reference/README.md`` (the sections
named). Every defect below was also confirmed by reading the peer's file named and rerunning the shrunk example.
"""

from __future__ import annotations

_LRNNX_BILINEAR = (
    "Real defect of lrnnx 1.0.0.post1, `lrnnx/core/discretization.py::bilinear`: it returns "
    "ā = (1 + Δλ/2)^{-1}(1 − Δλ/2) and γ̄ = Δ/(1 + Δλ/2), the bilinear transform of −A. The bilinear (Tustin) rule "
    "of the S4 paper (Gu, Goel, Ré 2022, eq. 3) is Ā = (I − Δ/2·A)^{-1}(I + Δ/2·A), B̄ = (I − Δ/2·A)^{-1}ΔB, "
    "i.e. ā = (1 + Δλ/2)/(1 − Δλ/2), γ̄ = Δ/(1 − Δλ/2) for a diagonal A (reference/README.md §bilinear), which "
    "`scipy.signal.cont2discrete(method='bilinear')` also returns. lrnnx's selective-scan kernels and its torch "
    "`selective_scan_ref` use the correct form (LrnnxSelectiveScanRef passes); this function is what its LTI "
    "models call through `discretize_fn` (e.g. `lrnnx/models/lti/s5.py` with discretization='bilinear')."
)

_LRNNX_ASYNC = (
    "Real defect of lrnnx 1.0.0.post1, `lrnnx/core/discretization.py::async_`: it returns γ̄ = (Ā − 1)/λ with "
    "Ā = exp(Δτλ), so the input weight depends on the gap τ and a zero gap (simultaneous events) drops the event's "
    "input entirely (B̄ = 0 in the counterexample). The asynchronous rule of the event-SSM paper (Schöne et al., "
    "'Scalable Event-by-event Processing of Neuromorphic Sensory Signals With Deep State-Space Models') and of S7 is "
    "ā_k = exp(Δτ_kλ), γ̄ = (exp(Δλ) − 1)/λ, one nominal zoh step of input per event independent of τ_k "
    "(reference/README.md §async), which is also what the docstring of `async_` states. lrnnx's "
    "`selective_scan_ref` computes the correct rule through its `deltaA` argument (LrnnxSelectiveScanRef passes)."
)

_LRNNX_FFT64 = (
    "Real defect (precision) of lrnnx 1.0.0.post1, `lrnnx/core/convolution.py::fft_conv`: it casts every kernel "
    "factor to complex64 (`arg.cfloat()`) whatever the input's dtype, so a float64 LRU (and every lrnnx LTI model "
    "that convolves through `opt_ssm_forward`: LRU, S5, Centaurus) convolves with a single-precision kernel — "
    "errors of 1e-9 to 1e-8 relative instead of rounding (~1e-15) — and on the contraction paths of "
    "`opt_ssm_forward` where the complex128 input spectrum meets the complex64 factors in one einsum it raises "
    "'expected scalar type ComplexDouble but found ComplexFloat'. Also `lrnnx/models/lti/lru.py::"
    "allocate_inference_cache` allocates the state as complex64 whatever the module's dtype, so `step` rounds the "
    "state to single precision at every token. The LRU itself (x_k = λ x_{k−1} + γ B u_k, y_k = Re(C x_k) + D u_k, "
    "reference/README.md §LRU) is computed right: the float32 adapter LrnnxLRU passes every property."
)

_MAMBAPY_CONV1 = (
    "Real defect of mambapy 1.2.0, `mambapy/mamba.py::MambaBlock.step` at d_conv = 1: the cache of past inputs is "
    "updated as cat([inputs[:, :, 1:], x]), which keeps d_conv − 1 inputs only when d_conv ≥ 2. With d_conv = 1 the "
    "empty cache (B, D, 0) grows to one column, and from the second token on the step convolves [previous input, "
    "current input] with the width-1 filter and keeps output column d_conv − 1 = 0: the previous token's input. The "
    "Mamba block's causal depthwise convolution (Gu & Dao 2023, §3.4 and Figure 3; reference/README.md §Mamba) reads "
    "x_{t−W+1}, ..., x_t at token t, the current input alone for W = 1; `MambaBlock.forward` does that, `step` does "
    "not. For d_conv ≥ 2 step equals forward (checked directly for d_conv = 2 and 4)."
)

_MAMBAPY_F32 = (
    "Real defect (a silent downcast) of mambapy 1.2.0, `mambapy/mamba.py`: `MambaBlock.ssm` and `ssm_step` form "
    "A = −exp(A_log.float()) and D = D.float(), and `MambaBlock.__init__` builds A_log from a float32 arange, so a "
    "module converted with `.double()` still runs with A and D rounded to single precision (relative errors of "
    "~1e-8 in y and in dL/du instead of rounding) and initializes A_log = log(n + 1) only to float32 accuracy. "
    "Correct: A = −exp(A_log) in the parameters' dtype (S4D-Real init A_log = log(n + 1), reference/README.md "
    "§Mamba). The float32 adapter MambapyMamba passes these properties."
)

_RG_WIDTH1 = (
    "Real defect of recurrentgemma 1.0.1, `recurrentgemma/torch/layers.py::Conv1D.forward`: the new cache is "
    "`x[:, 1 - self.temporal_width:]`, meant to keep the last temporal_width − 1 inputs; at temporal_width = 1 the "
    "slice is `x[:, 0:]`, every input, and `_pad_cache` then asks `torch.zeros` for temporal_width − L − 1 < 0 rows "
    "and raises. So a recurrent block with a width-1 convolution cannot return its cache: neither `forward` with "
    "`return_cache=True` (its default) nor decoding works. Correct: a width-W causal convolution carries the W − 1 "
    "previous inputs, none for W = 1 (Griffin, De et al. 2024, Figure 2; reference/README.md §RG-LRU). Without the "
    "cache (`return_cache=False`, as the gradient and initialization properties run it) the block is right."
)

_S5PT_D = (
    "Real deviation of s5-pytorch 0.2.1, `s5/s5_model.py::S5SSM.__init__`: the feed-through is initialized as "
    "`D = torch.rand(h)`, uniform on [0, 1) (every draw positive), where S5 (Smith, Warrington, Linderman, "
    "'Simplified State Space Layers for Sequence Modeling', ICLR 2023, and its official code lindermanlab/S5 "
    "`s5/ssm.py`) initializes D ~ N(0, 1) (reference/README.md §S5). The "
    "fields before D in the reference's order (Lambda, B_tilde, C_tilde) matched in distribution; the property "
    "stops at the first field that does not, so log_step was not compared."
)

_LRNNX_RG_CACHE = (
    "Real defect of lrnnx 1.0.0.post1, `lrnnx/models/ltv/rglru.py::RGLRU.forward` (non-fused path): it fills the "
    "inference cache with `conv_state.copy_(F.pad(x, ...))` after `x = self.conv1d(x)`, so the cache holds the last "
    "W convolution outputs, while `RGLRU.step` treats conv_state as the last W inputs (it rolls the new input in and "
    "convolves the window). A causal width-W convolution must carry its W − 1 previous inputs (Griffin, De et al. "
    "2024, Figure 2; reference/README.md §RG-LRU; lrnnx's own Mamba.forward caches before its convolution). So a "
    "decoding step after a prefill forward is wrong: a direct run (H = D = 2, W = 3) gives |forward(5) then "
    "step − forward(6)| = 6e-4 on outputs of size 0.02, while a step loop from the zero state equals forward "
    "(2e-10)."
)

_LRNNX_RG_INIT = (
    "Real deviation of lrnnx 1.0.0.post1's RG-LRU initialization from Griffin/RecurrentGemma (reference/README.md "
    "§RG-LRU and §Other-libraries): torch's default Linear/Conv1d initializations instead of N(0, 1/H) projections, "
    "a N(0, 0.01/W) convolution and zero gate biases, and a = sigmoid(a_log) with a_log = log U[0.9, 0.999], so "
    "a = a_0/(1 + a_0) ∈ [0.47, 0.50] at initialization where Griffin draws a² ~ U[0.9², 0.999²] (a ∈ [0.9, "
    "0.999]). The property reports the first field, in the reference's order, that differs."
)

_LRNNX_MAMBA_STEP = (
    "Real defect of lrnnx 1.0.0.post1, `lrnnx/models/ltv/mamba.py::Mamba.step` (its torch branch): the state decays "
    "by dA = exp(Δ_t A) under every rule (the bilinear branch changes only dB = Δ_t B_t / (1 − Δ_t A/2)), while "
    "its forward (`selective_scan_ref`, and the CUDA kernel) uses the bilinear ā = (1 + Δ_t A/2)/(1 − Δ_t A/2) "
    "(reference/README.md §bilinear, §Mamba): with discretization='bilinear' step ≠ forward from the second token "
    "on (here a relative error of ~1e-3, the gap between e^{x} and (1 + x/2)/(1 − x/2) at the drawn large step). "
    "The other rules' steps equal forward. A direct run (Δ ∈ [0.5, 1], x_proj × 10, D = 0) gives |step − forward| "
    "= 7.6e-4 on outputs of size 0.03 for bilinear and 4e-9 for zoh."
)

EXPLANATIONS: dict[tuple[str, str], str] = {
    ("LrnnxDiscretization", "discretize_matches_reference"): _LRNNX_BILINEAR + " (Its async rule is wrong too: "
    "see async_gaps_add_up.)",
    ("LrnnxDiscretization", "discretize_matches_scipy_cont2discrete"): _LRNNX_BILINEAR,
    ("LrnnxDiscretization", "stable_systems_stay_stable"): _LRNNX_BILINEAR + " The flip maps the stable half "
    "plane outside the unit disk: Re λ < 0 gives |ā| > 1, so a stable continuous system becomes an unstable "
    "recurrence.",
    ("LrnnxDiscretization", "dc_gain_matches_continuous"): _LRNNX_BILINEAR + " The bilinear rule keeps the DC "
    "gain, C(I − Ā)^{-1}B̄ = −C A^{-1} B; the flipped rule gives the DC gain of −A, the same value with the "
    "opposite sign.",
    ("LrnnxDiscretization", "async_gaps_add_up"): _LRNNX_ASYNC,
    ("LrnnxDiscretization", "async_with_unit_gaps_equals_zoh"): _LRNNX_ASYNC,
    ("LrnnxDiscretization", "integration_timesteps_scale_the_step"): _LRNNX_ASYNC,
    **{("LrnnxLRU64", name): _LRNNX_FFT64 for name in (
        "forward_matches_reference", "step_matches_forward", "chunked_forward_matches_one_shot", "forward_is_causal",
        "batch_rows_are_independent", "impulse_response_matches_scipy_dimpulse",
        "input_gradient_matches_fast_float64", "parameter_gradients_match_fast_float64",
    )},
    ("LrnnxMamba", "step_matches_forward"): _LRNNX_MAMBA_STEP,
    ("LrnnxRGLRU", "final_state_matches_reference"): _LRNNX_RG_CACHE,
    ("LrnnxRGLRU", "init_matches_reference"): _LRNNX_RG_INIT,
    ("MambapyMamba", "step_matches_forward"): _MAMBAPY_CONV1,
    ("MambapyMamba64", "step_matches_forward"): _MAMBAPY_CONV1 + " (The float64 module's A/D downcast, below, "
    "would fail this property too at float64 tolerance; the shrunk example shows the larger defect.)",
    **{("MambapyMamba64", name): _MAMBAPY_F32 for name in (
        "forward_matches_reference", "init_matches_reference", "input_gradient_matches_fast_float64",
        "parameter_gradients_match_fast_float64", "forward_is_causal", "batch_rows_are_independent",
    )},
    **{("RecurrentGemmaRGLRUConvWidth1", name): _RG_WIDTH1 for name in (
        "forward_matches_reference", "final_state_matches_reference", "step_matches_forward",
        "chunked_forward_matches_one_shot", "forward_is_causal", "batch_rows_are_independent",
    )},
    ("S5PytorchS5", "init_matches_reference"): _S5PT_D,
}

#: One line per peer: what the kit found (also proposed for the README).
FINDINGS: dict[str, str] = {
    "lrnnx": (
        "its `core/discretization.py` bilinear rule discretizes −A (a stable system becomes unstable, the DC gain "
        "flips sign) and its async rule scales the input by the gap; its LTI FFT convolution is single precision "
        "whatever the model's dtype (a float64 LRU is off by ~1e-8 or raises); its RG-LRU caches the convolution's "
        "outputs instead of its inputs (a decoding step after a prefill is wrong) and initializes a in [0.47, 0.50]; "
        "its Mamba.step decays by exp(ΔA) under the bilinear rule (step ≠ forward); its `selective_scan_ref` (all "
        "five rules), the rest of its Mamba (float32) and its float32 LRU pass every property they support."
    ),
    "mamba-ssm": (
        "`selective_scan_ref` and the `Mamba` module (non-fused path, float32) pass every property they support; "
        "`Mamba.forward` cannot start from a state (only `step` continues one), so chunked prefill is not checkable."
    ),
    "mambapy": (
        "forward matches the reference in float32, but `MambaBlock.step` differs from forward when d_conv = 1 (its "
        "input cache keeps one input too many), and a float64 module silently computes A and D in float32."
    ),
    "recurrentgemma": (
        "the torch recurrent block (RG-LRU) passes every property it supports for convolution widths ≥ 2; with "
        "a width-1 convolution it cannot return its cache (`Conv1D.forward` keeps every input, then the padding "
        "size goes negative)."
    ),
    "s5-pytorch": (
        "forward, step, chunked continuation, final state, impulse response and gradients match the reference S5 "
        "(conj_sym=False, zoh and bilinear) in float32; its D is initialized U[0, 1) instead of N(0, 1), and "
        "`S5.initial_state` raises AttributeError."
    ),
}

#: Defects seen by reading the code and confirmed by a direct run that no property shows (the adapter works around
#: them), listed so that the report does not read as "no defect".
NOT_FOUND_BY_THE_KIT: list[str] = [
    "s5-pytorch 0.2.1 `s5/s5_model.py::S5SSM.initial_state` returns `torch.zeros((*batch, self.C_tilde.shape[-2]))`, "
    "but S5SSM has no attribute C_tilde (its matrices are B and C; `get_BC_tilde()` forms them), so "
    "`S5.initial_state(batch)` raises AttributeError; and had it worked, C_tilde.shape[-2] is H, not the state size "
    "P, and the zeros would be real. The adapter passes the zero state of forward's returned shape, (B, P) "
    "complex64, instead (the state that S5.forward takes and returns works).",
]
