"""The ``mpcml`` command line: certificates, one-line errors, the insecure warning and the demo."""

from __future__ import annotations

import json
import logging
import socket
import tomllib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from parties.certs import load_tls
from parties.cli import main
from parties.config import federation_toml, load_federation
from parties.launcher import free_ports


@pytest.fixture
def fed_file(tmp_path):
    ports = free_ports(3)
    roles = {"alice": "left", "bob": "right", "dealer": "dealer"}
    text = federation_toml({pid: (f"127.0.0.1:{port}", role) for (pid, role), port in zip(roles.items(), ports)},
                           session="cli-test", timeout=2)
    path = tmp_path / "fed.toml"
    path.write_text(text.replace('[parties.bob]', '[parties.bob]\nhosts = ["bob.example.org"]'))
    (tmp_path / "alice.csv").write_text("1,2\n3,4\n")
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("mpcml: error: ")]
    assert len(errors) == 1, err
    return errors[0]


def test_certs_command_makes_a_ca_and_party_certificates(fed_file, capsys):
    assert main(["certs", "--federation", str(fed_file)]) == 0
    federation = load_federation(fed_file)
    for pid in ("alice", "bob", "dealer"):
        load_tls(federation, pid)
    cert = x509.load_pem_x509_certificate(federation.parties["bob"].cert.read_bytes())
    assert isinstance(cert.public_key().curve, ec.SECP256R1)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"bob", "bob.example.org"}
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert usages == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert oct(federation.parties["bob"].key.stat().st_mode & 0o777) == "0o600"
    assert not list(fed_file.parent.glob("certs/ca.key"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("parties = [", "is not valid toml"),
        ('[parties.alice]\naddress = "127.0.0.1:1"\n[parties.bob]\nrole = "x"\n', "parties.bob: 'address' (host:port) is required"),
        ('[parties.alice]\naddress = "127.0.0.1:1"\n[parties.bob]\naddress = "nowhere"\n', "address 'nowhere' must be host:port"),
        ('[parties.Alice]\naddress = "127.0.0.1:1"\n[parties.bob]\naddress = "127.0.0.1:2"\n', "party id 'Alice' is invalid"),
        ('chunk_mib = 16\n[parties.a]\naddress = "127.0.0.1:1"\n[parties.b]\naddress = "127.0.0.1:2"\n', "'chunk_mib' must be a number in [1, 4]"),
        ('colour = 1\n[parties.a]\naddress = "127.0.0.1:1"\n[parties.b]\naddress = "127.0.0.1:2"\n', "unknown key(s) ['colour']"),
        ('[limits]\nstreams = 1\n[parties.a]\naddress = "127.0.0.1:1"\n[parties.b]\naddress = "127.0.0.1:2"\n',
         "limits: 'streams' must be a number in [4, 64], got 1"),
        ('chunk_mib = 4\n[limits]\nbuffer_mib = 3\n[parties.a]\naddress = "127.0.0.1:1"\n[parties.b]\naddress = "127.0.0.1:2"\n',
         "limits: 'buffer_mib' must be a number in [4, 1.04858e+06], got 3"),
        ('[limits]\nqueue = 3\n[parties.a]\naddress = "127.0.0.1:1"\n[parties.b]\naddress = "127.0.0.1:2"\n',
         "limits: unknown key(s) ['queue']"),
    ],
)
def test_config_errors_are_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "fed.toml"
    path.write_text(text)
    assert main(["certs", "--federation", str(path)]) == 1
    line = one_error_line(capsys)
    assert message in line, line
    assert str(path) in line


def test_limits_default_to_the_documented_values(fed_file):
    limits = load_federation(fed_file).limits
    assert (limits.buffer_bytes, limits.streams, limits.idle_timeout, limits.message_timeout) == (512 << 20, 4, 30.0, 2.0)


def test_json_federation_equals_toml(fed_file):
    json_file = fed_file.with_suffix(".json")
    json_file.write_text(json.dumps(tomllib.loads(fed_file.read_text())))
    assert load_federation(json_file) == load_federation(fed_file)
    assert load_federation(json_file).roles() == {"alice": "left", "bob": "right", "dealer": "dealer"}


def test_missing_federation_file(tmp_path, capsys):
    assert main(["certs", "--federation", str(tmp_path / "none.toml")]) == 1
    assert "cannot read federation file" in one_error_line(capsys)


def test_unreadable_certificates_are_one_line(fed_file, capsys):
    args = ["party", "--federation", str(fed_file), "--id", "alice", "--protocol", "matmul", "--data", str(fed_file.parent / "alice.csv")]
    assert main(args) == 1
    assert "cannot read CA certificate" in one_error_line(capsys)
    assert main(["certs", "--federation", str(fed_file)]) == 0
    (fed_file.parent / "certs" / "alice.pem").write_text("garbage")
    assert main(args) == 1
    assert "is not a PEM certificate" in one_error_line(capsys)
    (fed_file.parent / "certs" / "alice.pem").write_bytes((fed_file.parent / "certs" / "bob.pem").read_bytes())
    assert main(args) == 1
    assert "is for ['bob'], not for party 'alice'" in one_error_line(capsys)


def test_port_in_use_is_one_line(fed_file, capsys):
    assert main(["certs", "--federation", str(fed_file)]) == 0
    port = load_federation(fed_file).parties["alice"].port
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        assert main(["party", "--federation", str(fed_file), "--id", "alice", "--protocol", "matmul",
                     "--data", str(fed_file.parent / "alice.csv")]) == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in one_error_line(capsys)


def test_bad_arguments_are_one_line(fed_file, capsys):
    assert main(["certs", "--federation", str(fed_file)]) == 0  # the data is read once the party's certificate is
    capsys.readouterr()
    base = ["party", "--federation", str(fed_file), "--id", "alice"]
    assert main([*base, "--protocol", "nosuch"]) == 1
    assert "unknown protocol 'nosuch'; available: " in one_error_line(capsys)
    assert main([*base, "--protocol", "matmul", "--option", "frac_bits"]) == 1
    assert "--option expects key=value" in one_error_line(capsys)
    assert main([*base, "--protocol", "matmul"]) == 1
    assert "needs a data file (--data)" in one_error_line(capsys)
    assert main(["party", "--federation", str(fed_file), "--id", "carol", "--protocol", "matmul"]) == 1
    assert "party 'carol' is not in the federation" in one_error_line(capsys)


def test_demo_list(capsys):
    assert main(["demo", "--list"]) == 0
    out = capsys.readouterr().out
    assert "matmul" in out and "matpower" in out


def test_demo_runs_processes_with_mutual_tls(capsys):
    assert main(["demo", "matmul", "--option", "n=12", "--option", "k=6", "--option", "m=4", "--timeout", "20"]) == 0
    out = capsys.readouterr()
    assert "3 party processes on loopback, mutual TLS" in out.out and "-> OK" in out.out
    assert "WARNING" not in out.err


def test_insecure_demo_warns(capsys):
    assert main(["demo", "matpower", "--insecure", "--option", "n=6", "--option", "rounds=2", "--timeout", "20"]) == 0
    out = capsys.readouterr()
    assert "INSECURE plaintext" in out.out and "-> OK" in out.out
    assert "WARNING: --insecure" in out.err


# certificate names and key files (issue 15, item 3)

@pytest.mark.parametrize(
    "edit, message",
    [
        (('[parties.alice]', '[parties.alice]\nhosts = ["bob"]'), "parties.alice.hosts: 'bob' is the id of party 'bob'"),
        (('[parties.alice]', '[parties.alice]\nhosts = ["Bob."]'), "parties.alice.hosts: 'Bob.' is the id of party 'bob'"),
        (('address = "127.0.0.1:', 'address = "dealer:'), "parties.alice.address: 'dealer' is the id of party 'dealer'"),
        (('[parties.alice]', '[parties.alice]\nhosts = ["bob.example.org"]'),
         "parties.alice.hosts: 'bob.example.org' is also a certificate name of party 'bob'"),
        (('[parties.alice]', '[parties.alice]\nhosts = ["*.example.org"]'), "wildcard name '*.example.org' is not allowed"),
    ],
    ids=["hosts-is-an-id", "hosts-is-an-id-other-case", "address-host-is-an-id", "hosts-shared", "wildcard"],
)
def test_certificate_names_of_one_party_may_not_name_another(fed_file, capsys, edit, message):
    """Before, `mpcml certs` issued alice a certificate that passed the check when a peer dialled bob."""
    fed_file.write_text(fed_file.read_text().replace(*edit, 1))
    assert main(["certs", "--federation", str(fed_file)]) == 1
    assert message in one_error_line(capsys)
    assert not (fed_file.parent / "certs").exists()


def test_parties_may_share_an_address_host(fed_file):
    """Several parties on one machine: every demo federation has all parties on 127.0.0.1."""
    assert {spec.host for spec in load_federation(fed_file).parties.values()} == {"127.0.0.1"}
    assert main(["certs", "--federation", str(fed_file)]) == 0


def test_key_files_are_rewritten_0600_and_symlinks_are_not_followed(fed_file, tmp_path):
    certs = fed_file.parent / "certs"
    certs.mkdir()
    (certs / "alice.key").write_text("old key")
    (certs / "alice.key").chmod(0o644)
    victim = tmp_path / "victim.txt"
    victim.write_text("not a key")
    victim.chmod(0o644)
    (certs / "bob.key").symlink_to(victim)
    assert main(["certs", "--federation", str(fed_file)]) == 0
    for pid in ("alice", "bob", "dealer"):
        key = certs / f"{pid}.key"
        assert not key.is_symlink() and oct(key.stat().st_mode & 0o777) == "0o600", pid
        assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert victim.read_text() == "not a key" and oct(victim.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in certs.iterdir()) == ["alice.key", "alice.pem", "bob.key", "bob.pem", "ca.pem",
                                                        "dealer.key", "dealer.pem"]  # no temporary files left


def test_load_tls_warns_when_the_key_is_readable_by_others(fed_file, caplog):
    assert main(["certs", "--federation", str(fed_file)]) == 0
    federation = load_federation(fed_file)
    with caplog.at_level(logging.WARNING, logger="parties.certs"):
        load_tls(federation, "alice")
    assert not caplog.records
    federation.parties["alice"].key.chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="parties.certs"):
        load_tls(federation, "alice")
    assert [r.getMessage() for r in caplog.records] == [
        f"private key {federation.parties['alice'].key} is accessible to group or others (mode 0o640); restrict it with chmod 600"]


def test_options_lists_every_option_with_its_default(capsys):
    from protocols.regression import RegressionConfig

    assert main(["options", "regression"]) == 0
    out = capsys.readouterr().out
    for name, default in RegressionConfig.defaults().items():
        assert f"  {name} (default {default!r}): " in out


@pytest.mark.slow  # three party processes
def test_party_saves_its_model_and_predict_uses_it(tmp_path, capsys):
    import numpy as np

    from parties.apps import load_app, read_csv, write_csv
    from parties.launcher import party_command, spawn, write_loopback_federation

    app = load_app("regression")
    options = {"epochs": "2", "random_state": "1"}
    data = app.demo_data(tmp_path, 0, options)
    federation = write_loopback_federation(app.DEMO_PARTIES, tmp_path / "run", timeout=60)
    model_file = tmp_path / "alice-model.npz"
    procs = {pid: spawn(party_command(federation, pid, "regression", data.get(pid), options, tmp_path / f"{pid}.out")
                        + (["--model", str(model_file)] if pid == "alice" else []), tmp_path / f"{pid}.log")
             for pid in app.DEMO_PARTIES}
    assert all(proc.wait(120) == 0 for proc in procs.values()), [(tmp_path / f"{p}.log").read_text() for p in procs]
    alice = read_csv(data["alice"])
    X = np.hstack([alice[:, :-1], *(read_csv(data[pid]) for pid in sorted(data) if pid != "alice")])
    write_csv(tmp_path / "X.csv", X, [f"x{i}" for i in range(X.shape[1])])
    assert main(["predict", "--model", str(model_file), "--data", str(tmp_path / "X.csv"),
                 "--output", str(tmp_path / "P.csv")]) == 0
    table = np.loadtxt(tmp_path / "P.csv", delimiter=",", skiprows=1)
    from protocols.regression import SecureLogisticRegression

    model = SecureLogisticRegression.load(model_file)
    np.testing.assert_array_equal(table[:, 0], model.predict(X))
    np.testing.assert_allclose(table[:, 1:], model.predict_proba(X), rtol=1e-15)
    assert (table[:, 0] == alice[:, -1]).mean() > 0.95
