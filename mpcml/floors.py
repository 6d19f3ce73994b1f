"""Security floors for key sizes and groups, and the one test-only switch that lowers them.

Additively homomorphic keys (Paillier, Okamoto–Uchiyama) below :data:`MIN_HE_KEY_BITS` = 2048 bits
(about 112-bit security, NIST SP 800-57 for factoring-based keys) and the
``INSECURE-dsa-1024-160-tests-only`` functional-encryption group are refused everywhere: at key
generation, for keys received from a peer, and in protocol configurations. Test suites need small
keys for speed, so the refusal is lifted only while the environment variable
``MPCML_INSECURE_TEST_KEYS`` is ``"1"``: set it (or use :func:`insecure_test_keys`) in a test
harness, never in a deployment. It is an environment variable so that it also reaches the party
processes a test launches. Whenever a weak key is allowed this way a warning is logged.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

INSECURE_ENV = "MPCML_INSECURE_TEST_KEYS"
MIN_HE_KEY_BITS = 2048

log = logging.getLogger(__name__)


def insecure_test_keys_allowed() -> bool:
    """Whether the test-only switch :data:`INSECURE_ENV` is on (exactly ``"1"``)."""
    return os.environ.get(INSECURE_ENV) == "1"


@contextmanager
def insecure_test_keys(allowed: bool = True) -> Iterator[None]:
    """Within the block, weak test keys are accepted (``allowed=False``: refused); restores the previous state."""
    before = os.environ.get(INSECURE_ENV)
    if allowed:
        os.environ[INSECURE_ENV] = "1"
    else:
        os.environ.pop(INSECURE_ENV, None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(INSECURE_ENV, None)
        else:
            os.environ[INSECURE_ENV] = before


def check_key_bits(name: str, bits: Any, *, floor: int = MIN_HE_KEY_BITS, hard_floor: int = 1024) -> int:
    """``bits`` as an int if it is at least ``floor`` (``hard_floor`` while the test switch is on); else ``ValueError``."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"{name} must be an integer number of bits, got {type(bits).__name__}")
    bits = int(bits)
    if bits >= floor:
        return bits
    if insecure_test_keys_allowed() and bits >= hard_floor:
        log.warning("%s=%d is below the %d-bit security floor: accepted only because %s=1 (tests only)",
                    name, bits, floor, INSECURE_ENV)
        return bits
    raise ValueError(
        f"{name}={bits} is below the {floor}-bit security floor for additively homomorphic keys; "
        f"weak keys are for tests only ({INSECURE_ENV}=1 lowers the floor to {hard_floor})"
    )


def check_insecure_name(name: str, value: str) -> str:
    """Refuse a parameter set whose name marks it insecure (``INSECURE...``) unless the test switch is on."""
    if value.upper().startswith("INSECURE") and not insecure_test_keys_allowed():
        raise ValueError(f"{name}={value!r} is an insecure test-only parameter set; it is refused "
                         f"outside tests ({INSECURE_ENV}=1 allows it)")
    return value
