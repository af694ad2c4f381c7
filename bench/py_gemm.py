"""float32 GEMM throughput of the Python references (numpy's BLAS or torch), the same shapes for both."""
import time

GEMM_SHAPES = {"1024^3": (1024, 1024, 1024), "4096x768x3072": (4096, 768, 3072)}


def gemm_gflops(randn, shapes=GEMM_SHAPES, reps=5):
    """GFLOP/s of a @ b per label, with randn(rows, cols) making float32 operands; one warm-up product."""
    out = {}
    for label, (m, k, n) in shapes.items():
        a = randn(m, k)
        b = randn(k, n)
        a @ b
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        out[label] = 2 * m * k * n / ((time.perf_counter() - t0) / reps) / 1e9
    return out
