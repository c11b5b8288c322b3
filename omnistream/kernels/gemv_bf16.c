/* bf16 matrix × few-rows product for decode steps on AVX-512-BF16 CPUs.
 *
 *   Y[m, o] = Σ_i X[m, i] · W[o, i]   W bf16 [O, I] row-major (an nn.Linear weight), X bf16 [M, I], M ≤ 4
 *
 * A decode step reads every weight once for one activation row, so the product is bound by how fast the
 * weight streams from memory. torch's bf16 GEMM reorders W into oneDNN's blocked layout inside every call and
 * streams it at 7-10 GB/s per core; this walks W's rows in address order — a single stream the hardware
 * prefetcher follows across 4 KB pages — with one `vdpbf16ps` (32 bf16 products summed pairwise into 16 fp32
 * lanes) per 64-byte cache line, eight loads in flight per iteration and four independent partial sums to hide
 * the instruction's latency. (Measured on a Zen 4 core: 22-23 GB/s against 8-10 for the GEMM; software
 * prefetching only slowed it.) Accumulation
 * is fp32; y is rounded to bf16 (nearest-even), like the GEMM it replaces. Threads come from the process's
 * OpenMP runtime (the one torch loaded), so `torch.set_num_threads` governs them too.
 *
 * Beyond four rows the product is bound by the dot-product instructions, not memory, and oneDNN's blocked
 * kernels beat this row-wise one: those shapes are left to torch.
 */
#include <immintrin.h>
#include <stdint.h>

static inline uint16_t to_bf16(float value) {
    union { float f; uint32_t u; } bits = { value };
    if ((bits.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits.u >> 16) | 0x40u);   /* quiet NaN */
    return (uint16_t)((bits.u + 0x7fffu + ((bits.u >> 16) & 1u)) >> 16);
}

static inline __m512bh load(const uint16_t *p) { return (__m512bh)_mm512_loadu_si512(p); }

static inline __m512bh load_masked(const uint16_t *p, __mmask32 mask) {
    return (__m512bh)_mm512_maskz_loadu_epi16(mask, p);
}

static inline float row_dot(const uint16_t *w, const uint16_t *x, int64_t I) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
           a3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 256 <= I; i += 256) {
        a0 = _mm512_dpbf16_ps(a0, load(x + i), load(w + i));
        a1 = _mm512_dpbf16_ps(a1, load(x + i + 32), load(w + i + 32));
        a2 = _mm512_dpbf16_ps(a2, load(x + i + 64), load(w + i + 64));
        a3 = _mm512_dpbf16_ps(a3, load(x + i + 96), load(w + i + 96));
        a0 = _mm512_dpbf16_ps(a0, load(x + i + 128), load(w + i + 128));
        a1 = _mm512_dpbf16_ps(a1, load(x + i + 160), load(w + i + 160));
        a2 = _mm512_dpbf16_ps(a2, load(x + i + 192), load(w + i + 192));
        a3 = _mm512_dpbf16_ps(a3, load(x + i + 224), load(w + i + 224));
    }
    for (; i < I; i += 32) {                                  /* the last I mod 256 columns */
        const __mmask32 mask = I - i >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (I - i)) - 1u);
        a0 = _mm512_dpbf16_ps(a0, load_masked(x + i, mask), load_masked(w + i, mask));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* Y = X Wᵀ for M = 2..4 rows of X: each weight vector is loaded once and feeds M products, so the weight still
 * streams once; two partial sums per X row keep 2M independent chains. Named accumulators (not an array) and
 * one function per M, so that they stay in registers. */
#define DOT2(k)                                                                                             \
    if (ROWS > k) {                                                                                         \
        a##k = _mm512_dpbf16_ps(a##k, load(X + k * I + i), w0);                                            \
        b##k = _mm512_dpbf16_ps(b##k, load(X + k * I + i + 32), w1);                                       \
    }
#define DOT1(k) if (ROWS > k) a##k = _mm512_dpbf16_ps(a##k, load_masked(X + k * I + i, mask), w0);
#define STORE(k) if (ROWS > k) Y[k * O] = to_bf16(_mm512_reduce_add_ps(_mm512_add_ps(a##k, b##k)));
#define ROWS_DOT(MM)                                                                                        \
static void rows_dot_##MM(const uint16_t *w, const uint16_t *X, uint16_t *Y, int64_t O, int64_t I) {      \
    enum { ROWS = MM };                                                                                   \
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;       \
    int64_t i = 0;                                                                                        \
    for (; i + 64 <= I; i += 64) {                                                                        \
        const __m512bh w0 = load(w + i), w1 = load(w + i + 32);                                          \
        DOT2(0) DOT2(1) DOT2(2) DOT2(3)                                                                   \
    }                                                                                                     \
    for (; i < I; i += 32) {                                                                              \
        const __mmask32 mask = I - i >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (I - i)) - 1u); \
        const __m512bh w0 = load_masked(w + i, mask);                                                     \
        DOT1(0) DOT1(1) DOT1(2) DOT1(3)                                                                   \
    }                                                                                                     \
    STORE(0) STORE(1) STORE(2) STORE(3)                                                                   \
}
ROWS_DOT(2)
ROWS_DOT(3)
ROWS_DOT(4)

/* Y [M, O] = X [M, I] Wᵀ for M = 1..4. Parallel over weight rows when W is big enough that a fork/join
 * (a few µs) is worth it. Returns -1 for other M (the caller uses the general GEMM). */
int omnistream_gemv_bf16(const uint16_t *W, const uint16_t *X, uint16_t *Y, int64_t M, int64_t O, int64_t I) {
    const int parallel = O * I >= (1 << 18);
    switch (M) {
    case 1: {
        #pragma omp parallel for schedule(static) if (parallel)
        for (int64_t o = 0; o < O; o++) Y[o] = to_bf16(row_dot(W + o * I, X, I));
        return 0;
    }
    case 2: {
        #pragma omp parallel for schedule(static) if (parallel)
        for (int64_t o = 0; o < O; o++) rows_dot_2(W + o * I, X, Y + o, O, I);
        return 0;
    }
    case 3: {
        #pragma omp parallel for schedule(static) if (parallel)
        for (int64_t o = 0; o < O; o++) rows_dot_3(W + o * I, X, Y + o, O, I);
        return 0;
    }
    case 4: {
        #pragma omp parallel for schedule(static) if (parallel)
        for (int64_t o = 0; o < O; o++) rows_dot_4(W + o * I, X, Y + o, O, I);
        return 0;
    }
    default:
        return -1;
    }
}
