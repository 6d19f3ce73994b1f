"""CKKS arrays (mpcml.ckks) against numpy within the stated precision."""

from __future__ import annotations

import numpy as np
import pytest

from mpcml import codec
from mpcml.ckks import PRESETS, CKKSArray, load_context, make_context, public_context_bytes, weighted_sum


@pytest.fixture(scope="module")
def ctx():
    return make_context("default")


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(3)  # test data only


def test_params_are_stated():
    p = PRESETS["default"]
    assert (p.slots, p.max_abs, p.depth) == (4096, 2.0**19, 2)
    with pytest.raises(ValueError, match="preset"):
        make_context("fast")


def test_encrypt_decrypt_matrix_with_extremes(ctx, data):
    context, params = ctx
    x = data.uniform(-1, 1, (3, 3000))  # 9000 values: three chunks
    x[0, :3] = [0.0, params.max_abs * 0.999, -params.max_abs * 0.999]
    enc = CKKSArray.encrypt(context, params, x)
    assert len(enc.chunks) == 3
    assert np.max(np.abs(enc.decrypt() - x)) <= enc.error_bound
    with pytest.raises(ValueError, match="CKKS limit"):
        CKKSArray.encrypt(context, params, [params.max_abs])
    with pytest.raises(ValueError, match="NaN"):
        CKKSArray.encrypt(context, params, [np.inf])


def test_sums_and_weighted_sums(ctx, data):
    context, params = ctx
    xs = [data.uniform(-100, 100, (20, 30)) for _ in range(5)]
    encs = [CKKSArray.encrypt(context, params, x) for x in xs]
    total = encs[0]
    for e in encs[1:]:
        total = total + e
    assert np.max(np.abs(total.decrypt() - sum(xs))) <= total.error_bound
    diff = (encs[0] - encs[1]) + xs[2]
    assert np.max(np.abs(diff.decrypt() - (xs[0] - xs[1] + xs[2]))) <= diff.error_bound
    w = data.uniform(-2, 2, 5)
    ws = weighted_sum(encs, w.tolist())
    assert ws.level == 1
    assert np.max(np.abs(ws.decrypt() - sum(wi * x for wi, x in zip(w, xs)))) <= ws.error_bound
    elementwise = encs[0] * xs[1] * 0.5
    assert elementwise.level == 2
    assert np.max(np.abs(elementwise.decrypt() - xs[0] * xs[1] * 0.5)) <= elementwise.error_bound


def test_limits_are_enforced(ctx):
    context, params = ctx
    enc = CKKSArray.encrypt(context, params, np.full(4, 2.0**18))
    with pytest.raises(ValueError, match="CKKS limit"):
        enc + enc
    with pytest.raises(ValueError, match="CKKS limit"):
        enc * 2.0
    twice = enc * 0.5 * 0.5
    with pytest.raises(ValueError, match="no multiplicative levels"):
        twice * 1.0
    with pytest.raises(ValueError, match="different levels"):
        twice + enc
    with pytest.raises(ValueError, match="shape"):
        enc + np.ones(5)
    with pytest.raises(TypeError, match="plaintext multiplication"):
        enc * enc


def test_public_context_roundtrip_through_codec(ctx, data):
    context, params = ctx
    public = load_context(codec.decode(codec.encode(public_context_bytes(context))))
    assert not public.is_private() and context.is_private()
    x, y = data.normal(size=50), data.normal(size=50)
    from_party = CKKSArray.encrypt(public, params, x)  # an encryptor without the secret key
    with pytest.raises(ValueError):
        from_party.decrypt()
    wire = codec.decode(codec.encode((from_party * 2.0 + y).to_wire()))
    back = CKKSArray.from_wire(wire, context, params)
    assert np.max(np.abs(back.decrypt() - (2 * x + y))) <= back.error_bound
    with pytest.raises(ValueError, match="malformed"):
        CKKSArray.from_wire({**wire, "chunks": [b"junk"]}, context, params)
    with pytest.raises(ValueError, match="malformed CKKS context"):
        load_context(b"junk")


def test_deep_preset_three_levels(data):
    context, params = make_context("deep")
    x, w = data.uniform(-1000, 1000, 100), data.uniform(-1, 1, 100)
    enc = CKKSArray.encrypt(context, params, x) * w * w * w
    assert enc.level == 3
    assert np.max(np.abs(enc.decrypt() - x * w**3)) <= enc.error_bound
