"""CAESAR sparse logistic regression (Chen et al., KDD 2021) as two party processes.

Roles: ``features`` (party A: a CSV of its feature columns) and ``labels`` (party B: a CSV of its
feature columns with the 0/1 label as the last column); rows are aligned. A learns its weights
``w_A``, B learns ``w_B`` and the intercept. Threat model and leakage: see :mod:`protocols.caesar`.

Options: ``epochs`` (5), ``batch_size`` (100), ``learning_rate`` (2.0), ``l2`` (0), ``sigmoid``
(``linear`` | ``cubic``), ``key_bits`` (Paillier modulus, 2048), ``frac_bits`` (16), ``shuffle``
(0 or 1, default 0: rows in order; 1: B draws each epoch's order with its CSPRNG and outputs it,
so ``check`` replays it either way),
``report_loss`` (0 or 1: B also learns each epoch's mean squared residual), and
for the demo data ``rows`` (400), ``cols`` (200, split evenly) and ``density`` (0.05).

Demo data: synthetic one-hot sparse features with a known logistic model
(:func:`protocols.caesar.make_sparse_logistic`), written as dense CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from protocols.caesar import CaesarParams, make_sparse_logistic, reference_fit, run_party_a, run_party_b, weight_error_bound

from . import AppContext, CheckResult, get_flag, get_option, read_csv, write_csv

DESCRIPTION = "CAESAR: two-party sparse logistic regression, Paillier products + secret sharing (features + labels)"
DEMO_PARTIES = {"alice": "features", "bob": "labels"}


def params_from_options(options: Mapping[str, str]) -> CaesarParams:
    return CaesarParams(
        learning_rate=get_option(options, "learning_rate", float, 2.0),
        epochs=get_option(options, "epochs", int, 5),
        batch_size=get_option(options, "batch_size", int, 100),
        l2=get_option(options, "l2", float, 0.0),
        sigmoid=get_option(options, "sigmoid", str, "linear"),
        shuffle=get_flag(options, "shuffle"),
        key_bits=get_option(options, "key_bits", int, 2048),
        frac_bits=get_option(options, "frac_bits", int, 16),
        report_loss=get_flag(options, "report_loss"),
    ).check()


def build(ctx: AppContext) -> tuple[Callable[..., Any], tuple]:
    if ctx.role not in ("features", "labels"):
        raise ValueError(f"caesar has roles features and labels, not {ctx.role!r}")
    params = params_from_options(ctx.options)
    data = read_csv(ctx.require_data())
    if ctx.role == "features":
        return run_party_a, (ctx.party_for("labels"), data, params)
    if data.shape[1] < 2:
        raise ValueError(f"the labels party's file {str(ctx.data)!r} needs feature columns and a last label column")
    return run_party_b, (ctx.party_for("features"), data[:, :-1], data[:, -1], params)


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    rows, cols = get_option(options, "rows", int, 400), get_option(options, "cols", int, 200)
    x, y, _ = make_sparse_logistic(rows, cols, get_option(options, "density", float, 0.05), seed=seed)
    dense = x.toarray()
    return {
        "alice": write_csv(Path(out_dir) / "alice.csv", dense[:, : cols // 2]),
        "bob": write_csv(Path(out_dir) / "bob.csv", np.column_stack([dense[:, cols // 2 :], y])),
    }


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    params = params_from_options(options)
    x_a, b = read_csv(data["alice"]), read_csv(data["bob"])
    x_b, y = b[:, :-1], b[:, -1]
    ref_w, ref_b = reference_fit([x_a, x_b], y, params, orders=outputs["bob"]["orders"])
    bound = weight_error_bound([x_a, x_b], ref_w, params, len(y))
    got = np.concatenate([np.asarray(outputs["alice"]), np.asarray(outputs["bob"]["coef"])])
    error = max(float(np.max(np.abs(got - np.concatenate(ref_w)))), abs(outputs["bob"]["intercept"] - ref_b))
    return CheckResult(error <= bound, f"{len(got)} weights + intercept: max |error| vs plaintext = {error:.2e} (bound {bound:.2e})")
