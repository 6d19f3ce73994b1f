"""mpcml: secure multiparty machine-learning primitives.

The layers above (``protocols``, ``parties``) build on the names exported here.
"""

from .codec import CodecError
from .csprng import Csprng
from .fixedpoint import DEFAULT_FRAC_BITS, decode, encode
from .local import PartyFailed, RunOutputs, make_local_parties, run_local
from .party import CommStats, Party, PartyAborted, PartyTimeout
from .sharing import reconstruct, share
from .tensor import SharedTensor
from .session import Session, make_session
from .triples import DealerTriples, NoTriples, TripleSource, run_dealer

__all__ = [
    "CodecError", "CommStats", "Csprng", "DEFAULT_FRAC_BITS", "DealerTriples", "NoTriples", "Party", "PartyAborted",
    "PartyFailed", "PartyTimeout", "Session", "SharedTensor", "TripleSource", "decode", "encode",
    "RunOutputs", "make_local_parties", "make_session", "reconstruct", "run_dealer", "run_local", "share",
]
