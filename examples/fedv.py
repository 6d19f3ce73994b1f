"""FedV: three organisations hold different columns of the same customers; the aggregator trains a
logistic regression with two functional-encryption steps per gradient, no party-to-party traffic.

Run: ``python -m examples.fedv``. Prints a line per epoch (time, loss) and the test accuracy next to
the same gradient descent in plaintext on the same quantised data (the replay).
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from protocols.fedv import FedVClassifier, plaintext_fedv, reference_plan, replay_tolerance

EPOCHS = 5


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    blocks = np.array_split(X_train, 3, axis=1)
    est = FedVClassifier(epochs=EPOCHS, verbose=2, timeout=600).fit(blocks, y_train)
    config = est.make_config(parties=("party-0", "party-1", "party-2"), active="party-0")
    reference = plaintext_fedv(blocks, y_train.astype(float), config)
    error = float(np.max(np.abs(est.coef_ - reference["coef"])))
    print(f"test accuracy {est.score(X_test, y_test):.4f}; max |w - replay| = {error:.2e}; {est.communication_}")
    if error > replay_tolerance(config, reference_plan(config, blocks, y_train)):
        raise SystemExit("FedV does not match the plaintext replay")


if __name__ == "__main__":
    main()
