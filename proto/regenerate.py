"""Regenerate the committed gRPC stubs from proto/parties/wire.proto.

Run from the repository root with the pinned tools (``pip install -e '.[test]'``, which gives
grpcio-tools==1.85.1)::

    .venv/bin/python proto/regenerate.py            # writes parties/wire_pb2.py, parties/wire_pb2_grpc.py
    .venv/bin/python proto/regenerate.py --out DIR  # writes DIR/parties/wire_pb2*.py (used by the staleness test)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent
PROTO_FILE = "parties/wire.proto"
GENERATED = ("parties/wire_pb2.py", "parties/wire_pb2_grpc.py")


def regenerate(out: Path) -> list[Path]:
    """Run protoc (grpc_tools) into ``out``; returns the generated files."""
    from grpc_tools import protoc

    (out / "parties").mkdir(parents=True, exist_ok=True)
    status = protoc.main(
        ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={out}", f"--grpc_python_out={out}", str(PROTO_ROOT / PROTO_FILE)]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status}")
    return [out / name for name in GENERATED]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT, help="output root (default: the repository)")
    for path in regenerate(parser.parse_args().out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
