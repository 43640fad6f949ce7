#!/usr/bin/env python3
"""Drift test vectors: raw samples and the exact raw-sample figures, by scipy.

Writes vectors.json beside this file (committed; regenerate with
`python3 gen.py` after `pip install -r requirements.txt`). The Rust test
shared/tests/drift_vectors.rs records the same samples into Pitot's histograms, split across
simulated hosts and merged, and checks every figure against these within the SPEC's
tolerances. The synthetic cases are rounded to 3 decimals, as clients often send them; the
continuous ones are not: latencies in seconds at full precision, and every feature of two
real data sets that ship inside scikit-learn (no download): load_diabetes (442 patients, 10
standardised features around +-0.05 with 16 decimals) split by sex and at random, and
load_breast_cancer (569 tumours, 30 measurements) split malignant against benign and at
random. Real data sets are stored once, as rows, with the row masks of each split.

Definitions (SPEC § Drift), on raw values:
- ks: scipy.stats.ks_2samp(ref, cur).statistic
- wasserstein: scipy.stats.wasserstein_distance(ref, cur); sigma_ref = population std of ref
- psi/js over 10 bins cut at the reference deciles: e_k = the smallest ref value x with
  F_ref(x) >= k/10 (k = 1..9); a value v falls in bin #{k : e_k <= v}. PSI adds 0.5 to every
  bin on both sides; JS is scipy.spatial.distance.jensenshannon (natural log), no pseudo-count.
- categorical: psi (0.5 pseudo-count per category), js, chi2/p of
  scipy.stats.chi2_contingency(correction=False) with categories empty on both sides dropped,
  new_categories = share of current mass in categories absent from the reference.
"""
import json
import math
import os

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon


def r3(a):
    return [round(float(x), 3) for x in a]


def numeric_expected(ref, cur):
    ref = np.asarray(ref, dtype=float)
    cur = np.asarray(cur, dtype=float)
    if len(ref) == 0 or len(cur) == 0:
        return None
    srt = np.sort(ref)
    n = len(srt)
    edges = [srt[math.ceil(k * n / 10) - 1] for k in range(1, 10)]
    rb = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=10).astype(float)
    cb = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=10).astype(float)
    p = (rb + 0.5) / (rb.sum() + 5.0)
    q = (cb + 0.5) / (cb.sum() + 5.0)
    psi = float(np.sum((q - p) * np.log(q / p)))
    js = float(jensenshannon(rb / rb.sum(), cb / cb.sum()))
    return {
        "ks": float(stats.ks_2samp(ref, cur).statistic),
        "wasserstein": float(stats.wasserstein_distance(ref, cur)),
        "sigma_ref": float(np.std(ref)),
        "psi": psi,
        "js": js if not math.isnan(js) else 0.0,
    }


def categorical_expected(ref, cur):
    if sum(ref.values()) == 0 or sum(cur.values()) == 0:
        return None
    cats = sorted(set(ref) | set(cur))
    cats = [c for c in cats if ref.get(c, 0) + cur.get(c, 0) > 0]
    r = np.array([ref.get(c, 0) for c in cats], dtype=float)
    c = np.array([cur.get(c, 0) for c in cats], dtype=float)
    chi2, p_value, _, _ = stats.chi2_contingency(np.vstack([r, c]), correction=False)
    pp = (r + 0.5) / (r.sum() + 0.5 * len(cats))
    qq = (c + 0.5) / (c.sum() + 0.5 * len(cats))
    new = sum(cur.get(k, 0) for k in cats if ref.get(k, 0) == 0) / c.sum()
    return {
        "chi2": float(chi2),
        "p_value": float(p_value),
        "psi": float(np.sum((qq - pp) * np.log(qq / pp))),
        "js": float(jensenshannon(r / r.sum(), c / c.sum())),
        "new_categories": float(new),
    }


def main():
    rng = np.random.default_rng(20261126)
    cases = []

    def numeric(name, ref, cur, rounded=True):
        if rounded:
            ref, cur = r3(ref), r3(cur)
        else:
            ref, cur = [float(v) for v in ref], [float(v) for v in cur]
        cases.append({"name": name, "kind": "numeric", "reference": ref, "current": cur,
                      "expected": numeric_expected(ref, cur)})

    def categorical(name, ref, cur):
        cases.append({"name": name, "kind": "categorical", "reference": ref, "current": cur,
                      "expected": categorical_expected(ref, cur)})

    numeric("normal-shift", rng.normal(100, 15, 4000), rng.normal(103, 15, 3000))
    numeric("normal-same", rng.normal(100, 15, 4000), rng.normal(100, 15, 4000))
    numeric("lognormal", rng.lognormal(3.0, 0.8, 4000), rng.lognormal(3.1, 0.8, 3000))
    numeric("pareto-tail", (rng.pareto(1.5, 4000) + 1) * 10, (rng.pareto(1.2, 3000) + 1) * 10)
    mix = lambda n, w: np.where(rng.random(n) < w, rng.normal(20, 3, n), rng.normal(60, 5, n))
    numeric("bimodal", mix(4000, 0.5), mix(3000, 0.7))
    tokens = lambda n, mu: np.minimum(np.round(rng.lognormal(mu, 1.0, n)), 4096)
    numeric("tokens-capped", tokens(4000, 6.0), tokens(3000, 6.4))
    numeric("negative", rng.normal(-50, 20, 3000), rng.normal(-44, 20, 3000))
    numeric("one-value-reference", np.full(200, 5.0), rng.normal(5, 1, 1000))
    numeric("one-value-both", np.full(50, 3.0), np.full(80, 3.0))
    numeric("small", rng.normal(0, 1, 30), rng.normal(0.5, 1, 25))
    numeric("empty-current", rng.normal(0, 1, 100), [])

    langs = ["en", "fr", "de", "es", "zh", "ja", "40K - 60K €"]
    pr = np.array([0.5, 0.15, 0.1, 0.1, 0.08, 0.07, 0.0])
    pc = np.array([0.42, 0.15, 0.1, 0.12, 0.08, 0.07, 0.06])
    draw = lambda n, p: dict(zip(*np.unique(rng.choice(langs, n, p=p), return_counts=True)))
    as_counts = lambda d: {str(k): int(v) for k, v in d.items()}
    categorical("languages-new-category", as_counts(draw(5000, pr)), as_counts(draw(4000, pc)))
    categorical("languages-same", as_counts(draw(5000, pr)), as_counts(draw(5000, pr)))
    categorical("one-category", {"en": 40}, {"en": 70})

    # Continuous latencies in seconds, full precision (0.1's 0.001 step made bounds collapse).
    numeric("seconds-continuous", list(rng.lognormal(-5.2, 0.5, 3000)),
            list(rng.lognormal(-5.1, 0.5, 3000)), rounded=False)

    import sklearn
    from sklearn import datasets as skd
    real = []
    diabetes = skd.load_diabetes()
    x = diabetes.data
    sex = x[:, 1] > 0
    random_half = np.random.default_rng(442).random(len(x)) < 0.5
    real.append(("diabetes", diabetes.feature_names, x,
                 {"by-sex": sex, "random": random_half}))
    cancer = skd.load_breast_cancer()
    x = cancer.data
    malignant = cancer.target == 0
    random_half = np.random.default_rng(569).random(len(x)) < 0.5
    real.append(("breast_cancer", list(cancer.feature_names), x,
                 {"malignant-vs-benign": malignant, "random": random_half}))
    sets = []
    for name, features, x, splits in real:
        masks = {k: [bool(b) for b in m] for k, m in splits.items()}
        sets.append({"name": name, "features": list(features),
                     "rows": [[float(v) for v in row] for row in x], "splits": masks})
        for split, mask in splits.items():
            for j, feature in enumerate(features):
                # Reference: rows outside the mask; current: rows inside it.
                cases.append({"name": f"{name}/{feature}/{split}", "kind": "numeric",
                              "dataset": name, "feature": j, "split": split,
                              "expected": numeric_expected(x[~mask, j], x[mask, j])})

    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.json")
    with open(out, "w") as f:
        json.dump({"generator": "gen.py", "numpy": np.__version__,
                   "scipy": __import__("scipy").__version__,
                   "scikit-learn": sklearn.__version__, "datasets": sets, "cases": cases}, f)
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
