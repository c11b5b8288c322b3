"""Native CPU kernels, compiled on first use with the system C compiler and loaded with ctypes.

Optional by design: where there is no compiler, no AVX-512-BF16, or OMNISTREAM_NATIVE_KERNELS=0, callers
fall back to torch's own kernels with the same results up to bf16 rounding order.
"""
