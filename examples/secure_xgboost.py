"""Secure vertical XGBoost: breast_cancer split between two parties, both protocols, vs xgboost.

Run: ``python -m examples.secure_xgboost``. Party 0 holds the first 15 columns and the labels,
party 1 the other 15. Prints each variant's test AUC next to xgboost's, its communication, and
saves each party's model part to its own file.
"""

from __future__ import annotations

import tempfile
import time

import xgboost
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from protocols.xgb import SecureXGBClassifier


def main() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    parts_tr, parts_te = [xtr[:, :15], xtr[:, 15:]], [xte[:, :15], xte[:, 15:]]
    plain = xgboost.XGBClassifier(n_estimators=10, max_depth=3, learning_rate=0.3, tree_method="hist", max_bin=32)
    auc_plain = roc_auc_score(yte, plain.fit(xtr, ytr).predict_proba(xte)[:, 1])
    print(f"xgboost (plaintext, all columns in one place): test AUC {auc_plain:.4f}")
    for method in ("he", "ss"):
        clf = SecureXGBClassifier(method=method, n_estimators=10, max_depth=3, max_bin=32, key_bits=2048)
        start = time.perf_counter()
        clf.fit(parts_tr, ytr)
        elapsed = time.perf_counter() - start
        auc = roc_auc_score(yte, clf.predict_proba(parts_te)[:, 1])
        print(f"{method}: test AUC {auc:.4f} (trained in {elapsed:.1f} s); {clf.communication_}")
        with tempfile.TemporaryDirectory() as directory:
            files = clf.save(directory)
            print(f"    saved one file per party: {[f.name for f in files]}")
            reloaded = SecureXGBClassifier().load(directory)
            assert (reloaded.predict(parts_te) == clf.predict(parts_te)).all()


if __name__ == "__main__":
    main()
