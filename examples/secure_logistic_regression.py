"""Two banks train a logistic regression on breast-cancer data they hold in vertical slices.

Run: ``python -m examples.secure_logistic_regression``. Alice holds 15 feature columns and the
labels, Bob the other 15, for the same patients; a dealer supplies Beaver triples. They train
by mini-batch gradient descent on secret shares (``SecureLogisticRegression``), then the script
compares the test AUC with the same algorithm run in plaintext numpy and prints the
communication. The same roles run as separate processes with ``mpcml demo regression``.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from protocols.regression import SecureLogisticRegression, plaintext_sgd


def main() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=1, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    alice, bob = np.array_split(X_train, 2, axis=1)

    model = SecureLogisticRegression(epochs=10, batch_size=32, learning_rate=0.1, random_state=0)
    start = time.perf_counter()
    model.fit([alice, bob], y_train)  # alice (party 0) holds the labels
    elapsed = time.perf_counter() - start

    coef, intercept = plaintext_sgd(X_train, y_train, model.config_, model.batch_seed_)
    secure_auc = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
    plain_auc = roc_auc_score(y_test, X_test @ coef[0] + intercept[0])
    print(f"secure training: {model.n_iter_} epochs in {elapsed:.2f} s")
    print(f"test AUC: secure {secure_auc:.4f}, same algorithm in plaintext {plain_auc:.4f}")
    print(f"test accuracy: {model.score(X_test, y_test):.4f}")
    print(f"communication: {model.communication_}")


if __name__ == "__main__":
    main()
