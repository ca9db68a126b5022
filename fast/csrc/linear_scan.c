/* The diagonal linear recurrence as a plain step loop, compiled for the CPU (the C side of fast/cpu_scan.py).
 *
 *     x_k = a_k * x_{k-1} + b_k,   k = 0 .. L-1,   x_{-1} = x0 (0 when x0 is NULL)
 *
 * and its adjoint (the backward of the recurrence, with g = dL/dx):
 *
 *     G_{L-1} = g_{L-1},   G_k = g_k + conj(a_{k+1}) G_{k+1},   da_k = G_k conj(x_{k-1}).
 *
 * Layout: b, x, g, G, da are contiguous (B, L, F) arrays (F lanes, innermost); a is read at
 * a[r * a_row + k * a_step + f] (a_row and a_step may be 0: one decay per lane broadcast over batch or time);
 * x0 is (B, F). Complex numbers are (re, im) pairs, multiplied out in real arithmetic (no C99 complex type, whose
 * products check for NaN and infinity at every step). Each call runs the rows [r0, r1) and lanes [f0, f1), so that
 * the caller can split the work between threads; a row's steps run in order, every lane of a step at once (the
 * compiler vectorizes the loop over lanes), so each array is read or written once.
 *
 * Denormal numbers: the x86 flush-to-zero and denormals-are-zero modes are set for the call and restored after
 * it (a state that decays below the smallest normal number would otherwise make every later step of the loop
 * many times slower; what is flushed is below FLT_MIN / DBL_MIN times the scale of the state).
 */
#include <stdint.h>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define SAVE_FLUSH() unsigned int saved_csr_ = _mm_getcsr(); _mm_setcsr(saved_csr_ | 0x8040u)
#define RESTORE_FLUSH() _mm_setcsr(saved_csr_)
#else
#define SAVE_FLUSH() do {} while (0)
#define RESTORE_FLUSH() do {} while (0)
#endif

#define REAL_SCAN(NAME, T)                                                                                           \
    void NAME(const T *a, int64_t a_row, int64_t a_step, const T *b, T *x, const T *x0, int64_t r0, int64_t r1,      \
              int64_t f0, int64_t f1, int64_t L, int64_t F) {                                                        \
        SAVE_FLUSH();                                                                                                \
        for (int64_t r = r0; r < r1; r++) {                                                                          \
            const T *ar = a + r * a_row, *br = b + r * L * F;                                                        \
            T *xr = x + r * L * F;                                                                                   \
            if (x0) {                                                                                                \
                const T *s = x0 + r * F;                                                                             \
                for (int64_t f = f0; f < f1; f++) xr[f] = ar[f] * s[f] + br[f];                                      \
            } else {                                                                                                 \
                for (int64_t f = f0; f < f1; f++) xr[f] = br[f];                                                     \
            }                                                                                                        \
            for (int64_t k = 1; k < L; k++) {                                                                        \
                const T *restrict ak = ar + k * a_step,                                                              \
                      *restrict bk = br + k * F, *restrict xp = xr + (k - 1) * F;                                    \
                T *restrict xk = xr + k * F;                                                                         \
                for (int64_t f = f0; f < f1; f++) xk[f] = ak[f] * xp[f] + bk[f];                                     \
            }                                                                                                        \
        }                                                                                                            \
        RESTORE_FLUSH();                                                                                             \
    }

#define REAL_ADJOINT(NAME, T)                                                                                        \
    void NAME(const T *a, int64_t a_row, int64_t a_step, const T *x, const T *x0, const T *g, T *G, T *da,           \
              int64_t r0, int64_t r1, int64_t f0, int64_t f1, int64_t L, int64_t F) {                                \
        SAVE_FLUSH();                                                                                                \
        for (int64_t r = r0; r < r1; r++) {                                                                          \
            const T *ar = a + r * a_row, *gr = g + r * L * F, *xr = x + r * L * F;                                   \
            T *Gr = G + r * L * F, *dar = da ? da + r * L * F : 0;                                                   \
            for (int64_t k = L - 1; k >= 0; k--) {                                                                   \
                const T *gk = gr + k * F;                                                                            \
                T *Gk = Gr + k * F;                                                                                  \
                if (k == L - 1) {                                                                                    \
                    for (int64_t f = f0; f < f1; f++) Gk[f] = gk[f];                                                 \
                } else {                                                                                             \
                    const T *an = ar + (k + 1) * a_step, *Gn = Gk + F;                                               \
                    for (int64_t f = f0; f < f1; f++) Gk[f] = an[f] * Gn[f] + gk[f];                                 \
                }                                                                                                    \
                if (!dar) continue;                                                                                  \
                T *dak = dar + k * F;                                                                                \
                const T *xp = k > 0 ? xr + (k - 1) * F : (x0 ? x0 + r * F : 0);                                      \
                if (xp) {                                                                                            \
                    for (int64_t f = f0; f < f1; f++) dak[f] = Gk[f] * xp[f];                                        \
                } else {                                                                                             \
                    for (int64_t f = f0; f < f1; f++) dak[f] = 0;                                                    \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
        RESTORE_FLUSH();                                                                                             \
    }

/* Complex: element f of a row is the pair (p[2f], p[2f + 1]); strides and offsets count complex elements. */
#define COMPLEX_SCAN(NAME, T)                                                                                        \
    void NAME(const T *a, int64_t a_row, int64_t a_step, const T *b, T *x, const T *x0, int64_t r0, int64_t r1,      \
              int64_t f0, int64_t f1, int64_t L, int64_t F) {                                                        \
        SAVE_FLUSH();                                                                                                \
        for (int64_t r = r0; r < r1; r++) {                                                                          \
            const T *ar = a + 2 * r * a_row, *br = b + 2 * r * L * F;                                                \
            T *xr = x + 2 * r * L * F;                                                                               \
            if (x0) {                                                                                                \
                const T *s = x0 + 2 * r * F;                                                                         \
                for (int64_t f = f0; f < f1; f++) {                                                                  \
                    T are = ar[2 * f], aim = ar[2 * f + 1], sre = s[2 * f], sim = s[2 * f + 1];                      \
                    xr[2 * f] = are * sre - aim * sim + br[2 * f];                                                   \
                    xr[2 * f + 1] = are * sim + aim * sre + br[2 * f + 1];                                           \
                }                                                                                                    \
            } else {                                                                                                 \
                for (int64_t f = f0; f < f1; f++) {                                                                  \
                    xr[2 * f] = br[2 * f];                                                                           \
                    xr[2 * f + 1] = br[2 * f + 1];                                                                   \
                }                                                                                                    \
            }                                                                                                        \
            for (int64_t k = 1; k < L; k++) {                                                                        \
                const T *restrict ak = ar + 2 * k * a_step,                                                          \
                      *restrict bk = br + 2 * k * F, *restrict xp = xr + 2 * (k - 1) * F;                            \
                T *restrict xk = xr + 2 * k * F;                                                                     \
                for (int64_t f = f0; f < f1; f++) {                                                                  \
                    T are = ak[2 * f], aim = ak[2 * f + 1], pre = xp[2 * f], pim = xp[2 * f + 1];                    \
                    xk[2 * f] = are * pre - aim * pim + bk[2 * f];                                                   \
                    xk[2 * f + 1] = are * pim + aim * pre + bk[2 * f + 1];                                           \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
        RESTORE_FLUSH();                                                                                             \
    }

#define COMPLEX_ADJOINT(NAME, T)                                                                                     \
    void NAME(const T *a, int64_t a_row, int64_t a_step, const T *x, const T *x0, const T *g, T *G, T *da,           \
              int64_t r0, int64_t r1, int64_t f0, int64_t f1, int64_t L, int64_t F) {                                \
        SAVE_FLUSH();                                                                                                \
        for (int64_t r = r0; r < r1; r++) {                                                                          \
            const T *ar = a + 2 * r * a_row, *gr = g + 2 * r * L * F, *xr = x + 2 * r * L * F;                       \
            T *Gr = G + 2 * r * L * F, *dar = da ? da + 2 * r * L * F : 0;                                           \
            for (int64_t k = L - 1; k >= 0; k--) {                                                                   \
                const T *gk = gr + 2 * k * F;                                                                        \
                T *Gk = Gr + 2 * k * F;                                                                              \
                if (k == L - 1) {                                                                                    \
                    for (int64_t f = f0; f < f1; f++) {                                                              \
                        Gk[2 * f] = gk[2 * f];                                                                       \
                        Gk[2 * f + 1] = gk[2 * f + 1];                                                               \
                    }                                                                                                \
                } else { /* G_k = conj(a_{k+1}) G_{k+1} + g_k */                                                     \
                    const T *an = ar + 2 * (k + 1) * a_step, *Gn = Gk + 2 * F;                                       \
                    for (int64_t f = f0; f < f1; f++) {                                                              \
                        T are = an[2 * f], aim = an[2 * f + 1], nre = Gn[2 * f], nim = Gn[2 * f + 1];                \
                        Gk[2 * f] = are * nre + aim * nim + gk[2 * f];                                               \
                        Gk[2 * f + 1] = are * nim - aim * nre + gk[2 * f + 1];                                       \
                    }                                                                                                \
                }                                                                                                    \
                if (!dar) continue;                                                                                  \
                T *dak = dar + 2 * k * F;                                                                            \
                const T *xp = k > 0 ? xr + 2 * (k - 1) * F : (x0 ? x0 + 2 * r * F : 0);                              \
                if (xp) { /* da_k = G_k conj(x_{k-1}) */                                                             \
                    for (int64_t f = f0; f < f1; f++) {                                                              \
                        T cre = Gk[2 * f], cim = Gk[2 * f + 1], pre = xp[2 * f], pim = xp[2 * f + 1];                \
                        dak[2 * f] = cre * pre + cim * pim;                                                          \
                        dak[2 * f + 1] = cim * pre - cre * pim;                                                      \
                    }                                                                                                \
                } else {                                                                                             \
                    for (int64_t f = f0; f < f1; f++) {                                                              \
                        dak[2 * f] = 0;                                                                              \
                        dak[2 * f + 1] = 0;                                                                          \
                    }                                                                                                \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
        RESTORE_FLUSH();                                                                                             \
    }

REAL_SCAN(lrnn_scan_float32, float)
REAL_SCAN(lrnn_scan_float64, double)
COMPLEX_SCAN(lrnn_scan_complex64, float)
COMPLEX_SCAN(lrnn_scan_complex128, double)
REAL_ADJOINT(lrnn_adjoint_float32, float)
REAL_ADJOINT(lrnn_adjoint_float64, double)
COMPLEX_ADJOINT(lrnn_adjoint_complex64, float)
COMPLEX_ADJOINT(lrnn_adjoint_complex128, double)
