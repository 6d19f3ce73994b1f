"""Saving and loading models without pickle: one ``.npz`` file of plain arrays and a JSON header.

Format ``mpcml-model`` version 1: a NumPy ``.npz`` archive (``numpy.savez``) whose entry
``__meta__`` is the UTF-8 JSON header and whose other entries are numeric arrays. The header
holds ``format``, ``version``, ``kind`` (the estimator class or model type), ``params`` (JSON
values), ``attributes`` (small JSON values such as ``classes_`` or ``n_features_in_``) and
``digest``: SHA-256 over the header without the digest and every array's name, dtype, shape and
bytes. Loading uses ``allow_pickle=False`` and refuses, with a ``ValueError`` saying why, a file
of another format or version, another kind, an object array, or any change to the content
(the digest detects accidental or naive edits; it is not a signature).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

FORMAT = "mpcml-model"
VERSION = 1
_META = "__meta__"


def _digest(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def save_model(path: str | Path, kind: str, params: Mapping[str, Any], attributes: Mapping[str, Any],
               arrays: Mapping[str, np.ndarray]) -> Path:
    """Write a model file; ``params``/``attributes`` must be JSON values, ``arrays`` numeric arrays."""
    path = Path(path)
    for name, arr in arrays.items():
        if name == _META or not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
            raise TypeError(f"model array {name!r} must be a numeric numpy array")
    header = {"format": FORMAT, "version": VERSION, "kind": kind, "params": dict(params), "attributes": dict(attributes)}
    try:
        text = json.dumps({**header, "digest": _digest(header, arrays)}, sort_keys=True)
    except TypeError as exc:
        raise TypeError(f"model parameters and attributes must be JSON values: {exc}") from None
    with path.open("wb") as handle:
        np.savez(handle, **{_META: np.frombuffer(text.encode(), dtype=np.uint8)}, **arrays)
    return path


@dataclass(frozen=True)
class ModelFile:
    """The checked content of a model file."""

    kind: str
    params: dict[str, Any]
    attributes: dict[str, Any]
    arrays: dict[str, np.ndarray]


def load_model(path: str | Path, kind: str | None = None) -> ModelFile:
    """The content of a model file written by :func:`save_model` (of ``kind``, if given); checks all of it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable mpcml model file: {exc}") from None
    raw = contents.pop(_META, None)
    try:
        header = json.loads(bytes(raw).decode()) if raw is not None and raw.dtype == np.uint8 else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not an mpcml model file (no valid {_META!r} header)")
    if header.get("version") != VERSION:
        raise ValueError(f"{str(path)!r} has model format version {header.get('version')!r}; this mpcml reads version {VERSION}")
    if kind is not None and header.get("kind") != kind:
        raise ValueError(f"{str(path)!r} holds a {header.get('kind')!r} model, not a {kind!r}")
    digest = header.pop("digest", None)
    if digest != _digest(header, contents):
        raise ValueError(f"{str(path)!r} does not match its digest: the file was modified or is corrupt")
    if not isinstance(header.get("params"), dict) or not isinstance(header.get("attributes"), dict):
        raise ValueError(f"{str(path)!r} has a malformed header")
    return ModelFile(header["kind"], header["params"], header["attributes"], contents)
