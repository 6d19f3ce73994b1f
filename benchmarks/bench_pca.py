"""PPPCA: time and bytes of the HE (Paillier, CKKS) and SS variants against plaintext PCA.

Run: ``python -m benchmarks.bench_pca`` (``--quick`` for a small smoke run). Five holders of
20,000 x 50 rows each (standardised synthetic data with correlated features), one data
consumer, all in one process. Prints, per variant, the median time of a full secure fit
(``SecurePCA.fit``: local statistics, secure sum, eigendecomposition, local projections) and
its ratio to ``sklearn.decomposition.PCA.fit_transform`` on the pooled rows measured in the
same run, the bytes all parties send, and the largest deviation from scikit-learn.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.decomposition import PCA

from benchmarks.timing import median_time
from protocols.pca import VARIANTS, SecurePCA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--key-bits", type=int, default=2048, help="Paillier modulus size for the HE variant")
    args = parser.parse_args()
    holders, rows, features = (5, 2_000, 20) if args.quick else (5, 20_000, 50)
    repeats = 3
    data = np.random.default_rng(0)  # benchmark data only
    mixing = data.normal(size=(features, features)) / np.sqrt(features)
    X = data.normal(size=(holders * rows, features)) @ mixing
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    blocks = np.array_split(X, holders)
    k = 10
    plain = median_time(lambda: PCA(k).fit_transform(X), 5)
    ref = PCA(k).fit(X)
    print(f"PPPCA, {holders} holders x {rows} rows x {features} features, {k} components; "
          f"plaintext sklearn PCA {plain * 1e3:.1f} ms")
    for variant in VARIANTS:
        est = SecurePCA(n_components=k, variant=variant, key_bits=args.key_bits)
        secure = median_time(lambda: est.fit(blocks), repeats)
        signs = np.sign(np.sum(est.components_ * ref.components_, axis=1))
        ratio_err = np.max(np.abs(est.explained_variance_ratio_ - ref.explained_variance_ratio_))
        comp_err = np.max(np.abs(est.components_ * signs[:, None] - ref.components_))
        label = {"he": f"he (Paillier-{args.key_bits}, packed)", "ckks": "ckks (TenSEAL, N=8192)",
                 "ss": "ss (additive shares)"}[variant]
        print(f"  {label:<28} {secure * 1e3:9.1f} ms  ratio {secure / plain:6.2f}x  "
              f"{est.communication_.total_bytes / 1e3:9.1f} kB sent  "
              f"max |EVR error| {ratio_err:.1e}  max |component error| {comp_err:.1e}")


if __name__ == "__main__":
    main()
