"""PPPCA (Liu et al. 2020) as party processes: holders of row blocks and one data consumer.

Roles: ``holder`` (any number >= 2; each CSV holds that holder's rows, the same columns
everywhere) and ``consumer`` (learns the pooled mean and covariance and computes the
components; holds no data). Every holder returns the model and its own rows projected
locally. Threat model and leakage: see :mod:`protocols.pca`.

Options: ``variant`` (``he`` = packed Paillier, the default; ``ckks``; ``ss`` = additive
shares), ``n_components`` (an int, or a fraction of explained variance such as ``0.9``; default
5), ``standardize`` (``true``/``false``, default false), ``frac_bits`` (32), ``key_bits``
(Paillier modulus, 2048).

Demo data: ``load_breast_cancer`` standardised, rows split between alice, bob and carol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from protocols.pca import DEFAULT_FRAC_BITS, DEFAULT_VARIANT, pca_consumer, pca_holder

from . import AppContext, CheckResult, get_option, read_csv, write_csv

DESCRIPTION = "privacy-preserving PCA over row-partitioned data (Paillier, CKKS or secret-shared sums)"
DEMO_PARTIES = {"alice": "holder", "bob": "holder", "carol": "holder", "consumer": "consumer"}


def parse_n_components(text: str) -> int | float:
    """``"5"`` -> 5, ``"0.9"`` -> 0.9."""
    return int(text) if text.strip().isdigit() else float(text)


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"not a boolean: {text!r}")
    return lowered in ("true", "1", "yes")


def build(ctx: AppContext) -> tuple[Callable[..., Any], dict]:
    common = {
        "holders": ctx.parties_for("holder"),
        "consumer": ctx.party_for("consumer"),
        "variant": ctx.option("variant", str, DEFAULT_VARIANT),
        "frac_bits": ctx.option("frac_bits", int, DEFAULT_FRAC_BITS),
    }
    if ctx.role == "consumer":
        return pca_consumer, {
            **common,
            "n_components": ctx.option("n_components", parse_n_components, 5),
            "standardize": ctx.option("standardize", parse_bool, False),
            "key_bits": ctx.option("key_bits", int, 2048),
        }
    if ctx.role != "holder":
        raise ValueError(f"pca has roles holder and consumer, not {ctx.role!r}")
    return pca_holder, {"X": read_csv(ctx.require_data()), **common}


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    holders = [pid for pid, role in DEMO_PARTIES.items() if role == "holder"]
    return {pid: write_csv(Path(out_dir) / f"{pid}.csv", block) for pid, block in zip(holders, np.array_split(X, 3))}


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    """Compares with scikit-learn's PCA on the pooled rows (components up to sign)."""
    holders = sorted(data)
    blocks = [read_csv(data[pid]) for pid in holders]
    X = np.vstack(blocks)
    if get_option(options, "standardize", parse_bool, False):
        X = (X - X.mean(axis=0)) / X.std(axis=0, ddof=1)
    ref = PCA(get_option(options, "n_components", parse_n_components, 5)).fit(X)
    model = outputs[holders[0]]
    components = np.asarray(model["components"])
    if components.shape != ref.components_.shape:
        return CheckResult(False, f"components of shape {components.shape}, scikit-learn {ref.components_.shape}")
    signs = np.sign(np.sum(components * ref.components_, axis=1))
    ratio_error = float(np.max(np.abs(np.asarray(model["explained_variance_ratio"]) - ref.explained_variance_ratio_)))
    component_error = float(np.max(np.abs(components * signs[:, None] - ref.components_)))
    projection_error = max(
        float(np.max(np.abs(np.asarray(outputs[pid]["projection"]) * signs - ref.transform(X[start : start + len(b)]))))
        for pid, b, start in zip(holders, blocks, np.cumsum([0] + [len(b) for b in blocks[:-1]]))
    )
    return CheckResult(
        ratio_error <= 1e-6 and component_error <= 1e-4 and projection_error <= 1e-4,
        f"{len(holders)} holders, {components.shape[0]} components: max |EVR error| {ratio_error:.1e} (bound 1e-6), "
        f"max |component error| {component_error:.1e} (bound 1e-4), max |projection error| {projection_error:.1e}",
    )
