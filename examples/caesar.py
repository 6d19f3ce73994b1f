"""CAESAR in a few lines: two parties fit a logistic model on vertically split sparse one-hot data.

    python -m examples.caesar            # 2048-bit Paillier
    python -m examples.caesar --quick    # 1024-bit keys, smaller data (test keys only)
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

from protocols.caesar import CaesarLogisticRegression, make_sparse_logistic, reference_fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows, cols, key_bits = (1_000, 1_000, 1024) if args.quick else (4_000, 4_000, 2048)

    # Party A holds the first half of the columns, party B the rest and the labels.
    x, y, _ = make_sparse_logistic(rows + rows // 4, cols, 0.005, seed=7)
    x_train, x_test, y_train, y_test = x[:rows], x[rows:], y[:rows], y[rows:]

    def split(m):
        return [m[:, : cols // 2], m[:, cols // 2 :]]

    # verbose=1: one line per epoch (a progress bar in a terminal); report_loss: B also learns the epoch's loss
    model = CaesarLogisticRegression(learning_rate=4.0, epochs=2, batch_size=500, key_bits=key_bits, verbose=1,
                                     report_loss=True)
    model.fit(split(x_train), y_train)
    auc = roc_auc_score(y_test, model.decision_function(split(x_test)))

    # the same algorithm in plaintext, with the exact logistic function and the same (public) batches
    w, b = reference_fit(split(x_train), y_train, model.config_, model.batch_seed_, exact_sigmoid=True)
    plain_auc = roc_auc_score(y_test, x_test @ w[0] + b[0])

    print(f"test AUC: CAESAR {auc:.4f}, plaintext logistic regression (same hyperparameters) {plain_auc:.4f}")
    print(f"per epoch: {np.median(model.epoch_seconds_):.1f} s, {np.median(model.epoch_bytes_) / 1e6:.2f} MB")
    print(f"communication: {model.communication_}")


if __name__ == "__main__":
    main()
