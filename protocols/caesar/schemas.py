"""The shapes of the messages CAESAR's parties exchange (:mod:`mpcml.schema`), declared once."""

from __future__ import annotations

from mpcml.csprng import SEED_BYTES
from mpcml.schema import Anything, Bytes, Int, ListOf, Nothing, OneOf, Record, Str

ENCRYPTED = Record(shape=ListOf(Int(low=0)), frac_bits=Int(0, 512), c=ListOf(Int(low=1)))
"""An :class:`mpcml.he.EncryptedArray` on the wire (``from_wire`` checks the ciphertexts' range)."""
HELLO = Record(pk=Anything(), digest=Str(), seed=OneOf(Nothing(), Bytes(SEED_BYTES)))
"""Step 1: the public key (checked by :func:`mpcml.he.public_key_from_wire`), the options' digest, and B's batch-order seed."""
FACTS = Record(rows=Int(low=1), cols=Int(low=1), x_frac_bits=Int(0, 32), row_norm=Int(-256, 8192),
               spread=Int(-256, 16384), outputs=Int(0, 10_000))
"""Step 2: a party's public facts (:func:`protocols.caesar.config.block_facts`)."""
MASKED_SUM = Record(bound_bits=Int(low=1), enc=ENCRYPTED)
"""``report_loss``: one masked ciphertext."""
OPENED = ListOf(Int())
"""The output step: masked integers returned to their owner."""
QUERY = Record(pk=Anything(), rows=Int(low=1), cols=Int(low=1), x_frac_bits=Int(0, 32), row_norm=Int(-256, 8192))
"""Secure prediction, step 1: a fresh public key and the public facts of a party's query rows."""
