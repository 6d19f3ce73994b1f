"""Security floors (issue 15, items 5 and 6): weak HE keys and the insecure FE group are refused
everywhere unless the test-only switch is on, and a Paillier key's DJN base is computed by its receiver.

tests/conftest.py turns the switch on for the suite; each test here turns it off with
``insecure_test_keys(False)`` to see the refusal a deployment gets.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mpcml import he, make_local_parties, ou, paillier
from mpcml.dlog import INSECURE_TEST_GROUP
from mpcml.floors import INSECURE_ENV, check_key_bits, insecure_test_keys
from mpcml.paillier_triples import PaillierTriples
from protocols.caesar import CaesarConfig
from protocols.fedv import FedVConfig
from protocols.hybridalpha import HybridAlphaConfig
from protocols.regression import RegressionConfig
from protocols.xgb import SecureXGBClassifier

WEAK = 1024


@pytest.fixture(scope="module")
def weak_keys():
    return {scheme: he.generate_keypair(scheme, WEAK) for scheme in he.SCHEMES}


@pytest.mark.parametrize("scheme", he.SCHEMES)
def test_key_generation_below_2048_bits_is_refused(scheme):
    with insecure_test_keys(False):
        with pytest.raises(ValueError, match="2048-bit security floor"):
            he.generate_keypair(scheme, WEAK)
        with pytest.raises(ValueError, match="floor"):
            (ou if scheme == "ou" else paillier).generate_keypair(1536)
    with insecure_test_keys():
        with pytest.raises(ValueError, match="floor"):
            he.generate_keypair(scheme, 512)  # below even the tests' floor


@pytest.mark.parametrize("scheme", he.SCHEMES)
def test_weak_keys_from_the_wire_are_refused(scheme, weak_keys):
    wire = weak_keys[scheme][0].to_wire()
    with insecure_test_keys(False):
        with pytest.raises(ValueError, match="floor"):
            he.public_key_from_wire(wire)
    assert he.public_key_from_wire(wire) == weak_keys[scheme][0]


def test_protocol_configs_refuse_weak_keys_and_the_insecure_group():
    with insecure_test_keys(False):
        for config in (lambda: CaesarConfig(key_bits=WEAK), lambda: RegressionConfig(key_bits=WEAK)):
            with pytest.raises(ValueError, match="key_bits=1024"):
                config()
        with pytest.raises(ValueError, match="paillier_bits=1024"):
            HybridAlphaConfig(paillier_bits=WEAK, parties=("a", "b"))
        for config in (lambda: HybridAlphaConfig(group=INSECURE_TEST_GROUP.name, parties=("a", "b")),
                       lambda: FedVConfig(group=INSECURE_TEST_GROUP.name, parties=("a", "b"), active="a")):
            with pytest.raises(ValueError, match="insecure test-only"):
                config()
        with pytest.raises(ValueError, match="key_bits=1024"):
            SecureXGBClassifier(method="he", key_bits=WEAK).fit([np.ones((4, 1)), np.ones((4, 1))], np.array([0, 1, 0, 1]))
        parties = make_local_parties(["alice", "bob"])
        with pytest.raises(ValueError, match="floor"):
            PaillierTriples(parties["alice"], ("alice", "bob"), key_bits=WEAK)
        assert parties["alice"].stats.messages_sent == 0  # refused before anything was sent
    CaesarConfig(key_bits=WEAK)
    HybridAlphaConfig(paillier_bits=WEAK, group=INSECURE_TEST_GROUP.name, parties=("a", "b"))
    with pytest.raises(TypeError, match="key_bits"):
        check_key_bits("key_bits", 2048.0)


def test_the_switch_reaches_party_processes():
    code = "from mpcml import he; he.generate_keypair('ou', 1024); print('generated')"
    env = {k: v for k, v in os.environ.items() if k != INSECURE_ENV}
    refused = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "security floor" in refused.stderr
    allowed = subprocess.run([sys.executable, "-c", code], env={**env, INSECURE_ENV: "1"}, capture_output=True,
                             text=True, timeout=120)
    assert allowed.returncode == 0 and "generated" in allowed.stdout


def test_paillier_receiver_computes_the_djn_base(weak_keys):
    """Before: ``from_wire`` took ``hs`` as sent, and ``hs = 1 + n`` (not an n-th residue) made every
    encryption under the received key decrypt to ``m + a`` for the random exponent ``a``."""
    pk, sk = weak_keys["paillier"]
    n = int(pk.n)
    with pytest.raises(ValueError):
        paillier.PublicKey.from_wire({"n": n, "hs": 1 + n})
    with pytest.raises(ValueError):
        paillier.PublicKey.from_wire({"scheme": "paillier", "n": n, "hs": 1 + n})
    received = paillier.PublicKey.from_wire(pk.to_wire())
    assert received.djn_base == pow(int(pk.djn_h), n, n * n) == pk.djn_base
    values = np.arange(-20, 20)
    np.testing.assert_array_equal(sk.decrypt_int(received.encrypt_int(values)), values)
    np.testing.assert_array_equal(sk.decrypt_int(received.encrypt_int(values, randomness="subgroup")), values)
