"""mpcml parties: protocol roles as separate processes over gRPC with mutual TLS.

Modules: :mod:`parties.config` (federation file), :mod:`parties.certs` (CA and party
certificates), :mod:`parties.server` (party server with per-sender mailboxes), :mod:`parties.transport` (``GrpcParty``),
:mod:`parties.limits` (what one peer may make a server hold), :mod:`parties.failures` (naming
the party that failed), :mod:`parties.agreement` (the configuration parties compare at set-up),
:mod:`parties.framing` (chunk wire framing), :mod:`parties.node` (run one party),
:mod:`parties.launcher` (spawn all parties, ``mpcml demo``), :mod:`parties.cli` (the ``mpcml``
command) and :mod:`parties.apps` (one module per runnable protocol). See docs/parties.md.

Imports are kept lazy here so that ``mpcml party`` starts only what it needs.
"""
