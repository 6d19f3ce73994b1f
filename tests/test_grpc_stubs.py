"""The committed gRPC stubs are what the pinned grpcio-tools makes from proto/, and pyproject's floors match them."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("parties/wire_pb2.py", "parties/wire_pb2_grpc.py")


def test_committed_stubs_are_up_to_date(tmp_path):
    # a subprocess: grpc_tools bundles its own libprotobuf, which must not share a process with tenseal's
    subprocess.run([sys.executable, str(ROOT / "proto" / "regenerate.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=120)
    for name in GENERATED:
        assert (ROOT / name).read_text() == (tmp_path / name).read_text(), f"{name} is stale: run `python proto/regenerate.py`"


def test_pinned_tools_and_runtime_floors_match_the_generated_code():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[<>=]", d)[0]: d for d in project["dependencies"]}
    grpc_code = (ROOT / "parties" / "wire_pb2_grpc.py").read_text()
    pb2_code = (ROOT / "parties" / "wire_pb2.py").read_text()
    grpc_version = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", grpc_code).group(1)
    major, minor, patch = re.search(r"Domain.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", pb2_code).groups()
    assert deps["grpcio"] == f"grpcio>={grpc_version}"
    assert deps["protobuf"] == f"protobuf>={major}.{minor}.{patch},<{int(major) + 1}"
    assert f"grpcio-tools=={grpc_version}" in project["optional-dependencies"]["test"]
