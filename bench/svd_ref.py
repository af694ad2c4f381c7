"""Reference SVD paths for the SVD-initialisation benchmark (driven by bench/svd_bench.ts through py_serve):
  - scikit-learn TruncatedSVD(n_components=r, n_iter=10).fit + transform on Wᵀ, as the LoRA-XS authors'
    utils/svd_utils.py does (randomized, Halko et al., LU-normalised power iterations);
  - the exact path of their utils/initialization_utils.py: torch.linalg.svd(Wᵀ, full_matrices=False)
    (numpy.linalg.svd when torch is absent);
  - exact singular values in float64 (scipy.linalg.svdvals) as the accuracy reference.
Matrices are read from the safetensors files the driver wrote (float32, (out, in) like nn.Linear)."""
import time

import numpy as np
import scipy.linalg
from safetensors import safe_open
from sklearn.decomposition import TruncatedSVD

from py_gemm import gemm_gflops
from py_serve import serve

try:
    import torch

    torch.set_num_threads(2)
except ImportError:
    torch = None

_open = {}


def matrix(file, name):
    if file not in _open:
        _open.clear()
        _open[file] = safe_open(file, framework="np")
    return _open[file].get_tensor(name)


def matmul_peak(req):
    """float32 GEMM GFLOP/s of numpy (the machine's BLAS, all its threads)."""
    rng = np.random.default_rng(0)
    return {"gflops": gemm_gflops(lambda m, k: rng.standard_normal((m, k), dtype=np.float32), reps=req.get("repeats", 5))}


def svd(req):
    w = matrix(req["file"], req["name"])  # (out, in) float32
    wt = np.ascontiguousarray(w.T)  # the authors decompose weight.T
    rank = req["rank"]
    reply = {}
    t0 = time.perf_counter()
    tsvd = TruncatedSVD(n_components=rank, n_iter=req.get("n_iter", 10), random_state=req.get("seed", 0))
    tsvd.fit(wt)
    tsvd.transform(wt)
    reply["sklearn_s"] = time.perf_counter() - t0
    reply["sklearn_sigma"] = [float(x) for x in tsvd.singular_values_]
    if req.get("exact_time"):
        if torch is not None:
            t = torch.from_numpy(wt)
            t0 = time.perf_counter()
            torch.linalg.svd(t, full_matrices=False)
            reply["exact_s"] = time.perf_counter() - t0
            reply["exact_path"] = "torch.linalg.svd"
        else:
            t0 = time.perf_counter()
            np.linalg.svd(wt, full_matrices=False)
            reply["exact_s"] = time.perf_counter() - t0
            reply["exact_path"] = "numpy.linalg.svd"
    if req.get("exact_sigma"):
        s = scipy.linalg.svdvals(w.astype(np.float64))
        reply["sigma"] = [float(x) for x in s[: req.get("sigma_count", rank)]]
    return reply


serve({"matmul_peak": matmul_peak, "svd": svd})
