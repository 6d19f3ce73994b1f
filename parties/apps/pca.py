"""PPPCA (Liu et al. 2020) as party processes: holders of row blocks and one data consumer.

Roles: ``holder`` (any number >= 2; each CSV holds that holder's rows, the same columns
everywhere), ``consumer`` (learns the pooled mean and covariance and computes the
components; holds no data) and, for ``variant=ss`` only, optional ``server`` parties: the compute
parties the holders input their statistics to (without servers the holders compute the sum;
``engine=rss3`` needs exactly three compute parties, so three holders or three servers). Every
holder returns what ``holder_output`` allows and its own rows projected locally; a server returns
nothing. Threat model and leakage: see :mod:`protocols.pca`. Options: the fields of
:class:`protocols.pca.PCAConfig` (``mpcml options pca``).

Demo data: ``load_breast_cancer`` standardised, rows split between alice, bob and carol (three
holders, so the demo runs on either engine: ``mpcml demo pca --option variant=ss --option engine=rss3``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from protocols.config import ProtocolConfig
from protocols.pca import PCAConfig, SecurePCA, model_tolerance, reference_model, roles

from . import AppContext, CheckResult, parse, read_csv, write_csv

DESCRIPTION = "privacy-preserving PCA over row-partitioned data (Paillier, CKKS or secret-shared sums on beaver or rss3)"
DEMO_PARTIES = {"alice": "holder", "bob": "holder", "carol": "holder", "consumer": "consumer"}
CONFIG = PCAConfig


@dataclass(frozen=True)
class DEMO(ProtocolConfig):
    """No demo-only options."""


def _topology(federation: Mapping[str, str]) -> dict[str, Any]:
    consumers = sorted(p for p, r in federation.items() if r == "consumer")
    if len(consumers) != 1:
        raise ValueError(f"the federation must have exactly one party with role 'consumer', found {consumers}")
    servers = tuple(sorted(p for p, r in federation.items() if r == "server"))
    return {"holders": tuple(sorted(p for p, r in federation.items() if r == "holder")), "consumer": consumers[0],
            "compute_parties": servers or None}


def build(ctx: AppContext) -> tuple[Callable[..., Any], dict]:
    if ctx.role not in ("holder", "consumer", "server"):
        raise ValueError(f"pca has roles holder, consumer and server, not {ctx.role!r}")
    config = ctx.config(**_topology(ctx.federation))
    data = {ctx.party_id: read_csv(ctx.require_data())} if ctx.role == "holder" else {}
    party_roles, inputs = roles(config, data)
    return party_roles[ctx.party_id], inputs[ctx.party_id]


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    holders = [pid for pid, role in DEMO_PARTIES.items() if role == "holder"]
    return {pid: write_csv(Path(out_dir) / f"{pid}.csv", block) for pid, block in zip(holders, np.array_split(X, 3))}


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    """Compares each holder's model and projection with the plaintext replay (:func:`protocols.pca.reference_model`)
    within :func:`protocols.pca.model_tolerance`."""
    holders = tuple(sorted(data))
    config = parse(options, CONFIG, DEMO, holders=holders, consumer="consumer")
    blocks = [read_csv(data[pid]) for pid in holders]
    ref = reference_model(blocks, config)
    tolerance = model_tolerance(blocks, config)
    errors = []
    for pid, block in zip(holders, blocks):
        got = outputs[pid]
        errors += [float(np.max(np.abs(np.asarray(got[k]) - ref[k]))) for k in got if k in ref]
        expected = ((block - ref["mean"]) / ref["scale"]) @ ref["components"].T
        errors.append(float(np.max(np.abs(np.asarray(got["projection"]) - expected))))
    error = max(errors)
    return CheckResult(error <= tolerance, f"{len(holders)} holders, {ref['components'].shape[0]} components: max "
                                           f"|error| vs the plaintext replay {error:.1e} (bound {tolerance:.1e})")


def model(output: Mapping[str, Any], ctx: AppContext) -> SecurePCA:
    """A holder's model (components, mean, scale) as a fitted ``SecurePCA`` for ``transform``; a server has none."""
    if output is None:
        return None
    config = ctx.config(**_topology(ctx.federation))
    estimator = SecurePCA(**config.options())
    estimator.mean_, estimator.scale_ = np.asarray(output["mean"]), np.asarray(output["scale"])
    estimator.components_ = np.asarray(output["components"])
    estimator.n_components_, estimator.n_features_in_ = estimator.components_.shape
    for key in ("explained_variance", "explained_variance_ratio"):
        if key in output:
            setattr(estimator, f"{key}_", np.asarray(output[key]))
    return estimator
