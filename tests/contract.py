"""Checks of the estimator contract that every protocol's tests share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def assert_persists(est: Any, X: Any, tmp_path: Path, *, other: type | None = None) -> None:
    """``save``/``load`` keep the predictions and parameters; an edited file, a file of a future format
    version, a file that is not a model, and (with ``other``) loading as another class are refused."""
    cls = type(est)
    path = est.save(tmp_path / "model.npz")
    loaded = cls.load(path)
    method = "predict_proba" if hasattr(est, "predict_proba") else ("transform" if hasattr(est, "transform") else "predict")
    np.testing.assert_array_equal(getattr(loaded, method)(X), getattr(est, method)(X))
    assert loaded.get_params() == est.get_params()
    with np.load(path) as archive:
        contents = {name: archive[name] for name in archive.files}
    edited = next(name for name, value in contents.items() if name != "__meta__" and value.dtype.kind == "f")
    np.savez(tmp_path / "edited.npz", **{**contents, edited: contents[edited] * 1.01 + 1.0})
    with pytest.raises(ValueError, match="modified or is corrupt"):
        cls.load(tmp_path / "edited.npz")
    header = json.loads(bytes(contents["__meta__"]).decode())
    future = np.frombuffer(json.dumps({**header, "version": 99}).encode(), np.uint8)
    np.savez(tmp_path / "future.npz", **{**contents, "__meta__": future})
    with pytest.raises(ValueError, match="format version 99; this mpcml reads version 1"):
        cls.load(tmp_path / "future.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match="not a readable mpcml model file"):
        cls.load(tmp_path / "junk.npz")
    if other is not None:
        with pytest.raises(ValueError, match=cls.__name__):
            other.load(path)


def run_both_ways(protocol: str, options: dict[str, str], tmp_path: Path, *, seed: int = 0,
                  timeout: float = 60.0) -> tuple[Any, Any]:
    """The app's demo federation on its demo data (``seed``) in-process and as mTLS party processes;
    both runs must pass the app's own check (its plaintext replay). Returns ``(local outputs, process run)``."""
    from parties.apps import load_app, run_app_local
    from parties.launcher import run_processes

    app = load_app(protocol)
    data = app.demo_data(tmp_path, seed, options)
    local = run_app_local(protocol, data, options, timeout=timeout)
    remote = run_processes(protocol, data, options, work_dir=tmp_path / "run", secure=True, timeout=timeout)
    for outputs in (local, remote.outputs):
        result = app.check(outputs, data, options)
        assert result.ok, result.summary
    return local, remote
