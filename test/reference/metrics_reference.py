"""Reference values for test/metrics.test.ts, from scikit-learn and scipy.

Run (from the repository root, in any Python with `pip install scikit-learn scipy`):
    python test/reference/metrics_reference.py > test/fixtures/metrics_reference.json
The inputs are written into the JSON beside the outputs, so the test needs neither Python nor numpy.
Produced with scikit-learn 1.9.1, scipy 1.17.1, numpy (seeded generator, seed 1234).
"""
import json

import numpy as np
import scipy
import sklearn
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

rng = np.random.default_rng(1234)

classification = []
cases = [
    ("binary-small", [1, 0, 1, 1, 0, 1, 0, 0], [1, 0, 0, 1, 0, 1, 1, 0], 2),
    ("binary-all-one-class", [1, 1, 1, 1], [1, 0, 1, 0], 2),
]
gold = rng.integers(0, 2, 200)
pred = np.where(rng.random(200) < 0.8, gold, 1 - gold)
cases.append(("binary-random-200", pred.tolist(), gold.tolist(), 2))
gold = rng.integers(0, 3, 150)
pred = np.where(rng.random(150) < 0.6, gold, rng.integers(0, 3, 150))
cases.append(("three-class-random-150", pred.tolist(), gold.tolist(), 3))
gold = rng.integers(0, 5, 97)
pred = np.where(rng.random(97) < 0.4, gold, rng.integers(0, 5, 97))
cases.append(("five-class-random-97", pred.tolist(), gold.tolist(), 5))
for name, p, g, c in cases:
    entry = {
        "name": name,
        "pred": p,
        "gold": g,
        "num_classes": c,
        "accuracy": accuracy_score(g, p),
        "matthews_correlation": matthews_corrcoef(g, p),
        "f1_macro": f1_score(g, p, average="macro", zero_division=0),
    }
    if c == 2:
        entry["f1"] = f1_score(g, p, average="binary", pos_label=1, zero_division=0)
    classification.append(entry)

regression = []
x = rng.normal(size=120)
y = 0.7 * x + rng.normal(scale=0.5, size=120)
reg_cases = [
    ("continuous-120", x.tolist(), y.tolist()),
    # STS-B-like scores on a 0..5 grid, with many ties.
    ("ties-grid", np.round(rng.uniform(0, 5, 60) * 2).tolist(), np.round(rng.uniform(0, 5, 60) * 2).tolist()),
    ("small-with-ties", [1.0, 2.0, 2.0, 3.0, 5.0, 5.0, 5.0], [2.0, 1.0, 4.0, 4.0, 6.0, 3.0, 7.0]),
]
for name, a, b in reg_cases:
    regression.append({
        "name": name,
        "pred": a,
        "gold": b,
        "pearson": float(pearsonr(a, b)[0]),
        "spearman": float(spearmanr(a, b)[0]),
    })

print(json.dumps({
    "produced_by": "test/reference/metrics_reference.py",
    "versions": {"scikit-learn": sklearn.__version__, "scipy": scipy.__version__, "numpy": np.__version__},
    "classification": classification,
    "regression": regression,
}, indent=1))
