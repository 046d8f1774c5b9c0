"""Security of the gRPC port against the real longenc-server (real model, CPU) and the real
`longenc` CLI: TLS, mutual TLS, API keys, and start-up refusal of bad flag files.

Certificates are made by the `openssl` command at test time in a temporary directory (an ECDSA
CA, a server certificate for 127.0.0.1/localhost with SAN, a client certificate from that CA and
one from another CA); nothing is committed. Three servers run on 127.0.0.1 port 0 (the
scaleout_cluster helpers): a plain-text reference, TLS + API keys, and mutual TLS. Every accept
or reject case runs while a well-formed request is in flight on another thread, and that request
must succeed with the reference embedding; after each rejection the server still serves.

Needs $LONGENC_BUILD_DIR/bin/longenc-server and longenc and `openssl` (fails without them).
"""
import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from encoder_stubs import load_stubs  # noqa: E402
from scaleout_cluster import CLI, MODEL_DIR, SERVER, Replica  # noqa: E402

pytestmark = pytest.mark.needs_programs("longenc-server", "longenc", commands=("openssl",))

KEY = "k3y-for-tests_0123456789abcdefXYZ"
OTHER_KEY = "second-key/with+chars=="
WRONG_KEY = "this-is-not-a-configured-key-42"
TEXT = "Transport security keeps the embeddings of long documents private."
MISSING = "missing credentials: send 'authorization: Bearer <key>'"
INVALID = "invalid API key"
ATOL = 1e-4  # batch-mates (padding) move the float32 results by ~1e-6


# ------------------------------------------------------------------ certificates


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_leaf(d, name, ca, extensions):
    (d / f"{name}.ext").write_text(extensions)
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
            "-out", f"{name}.pem", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_leaf(d, "server", "ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
              "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    make_leaf(d, "client", "ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    make_leaf(d, "stranger", "otherca",
              "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    (d / "keys.txt").write_text(f"# test keys\ntests {KEY}\n\n{OTHER_KEY}\n")
    (d / "not-pem.txt").write_text("not a certificate\n")
    (d / "empty-keys.txt").write_text("# nothing but comments\n\n")
    return d


# ------------------------------------------------------------------ servers and clients


@pytest.fixture(scope="module")
def stubs():
    """encoder_pb2 / encoder_pb2_grpc (health is called raw, below)."""
    pb2, pb2_grpc = load_stubs()
    return {"longenc.v1.encoder_pb2": pb2, "longenc.v1.encoder_pb2_grpc": pb2_grpc}


def health_status(channel, service=""):
    """grpc.health.v1.Health/Check without generated code: HealthCheckRequest is field 1
    (string), the answer's status is field 1 (enum; SERVING = 1)."""
    raw = service.encode()
    request = b"\x0a" + bytes([len(raw)]) + raw if raw else b""
    reply = channel.unary_unary("/grpc.health.v1.Health/Check")(request, timeout=10)
    return {b"\x08\x01": "SERVING", b"\x08\x02": "NOT_SERVING"}.get(reply, repr(reply))


def cli(*args, env=None, timeout=120):
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


class Server:
    """A Replica plus how a well-behaved client reaches it (CLI flags and grpcio credentials)."""

    def __init__(self, workdir, index, pki, flags=(), cli_flags=(), key=None, client_cert=False):
        self.pki = pki
        self.cli_flags = list(cli_flags)
        self.key = key
        self.client_cert = client_cert
        self.tls = any(f.startswith("--tls_cert") for f in flags)
        self.replica = Replica(workdir, index, threads=1, extra_flags=flags)
        self.address = self.replica.address

    def wait_serving(self, timeout=180):
        deadline = time.time() + timeout
        while True:
            result = cli("health", f"--server={self.address}", "--timeout=5s", *self.cli_flags)
            if result.returncode == 0 and result.stdout.strip() == "SERVING":
                return
            assert self.replica.proc.poll() is None, self.replica.log()
            assert time.time() < deadline, result.stderr
            time.sleep(0.2)

    def channel(self, tls=None, client_cert=None, ca="ca", cert="client"):
        import grpc

        tls = self.tls if tls is None else tls
        client_cert = self.client_cert if client_cert is None else client_cert
        if not tls:
            return grpc.insecure_channel(self.address)
        creds = grpc.ssl_channel_credentials(
            root_certificates=(self.pki / f"{ca}.pem").read_bytes(),
            private_key=(self.pki / f"{cert}.key").read_bytes() if client_cert else None,
            certificate_chain=(self.pki / f"{cert}.pem").read_bytes() if client_cert else None)
        return grpc.secure_channel(self.address, creds)

    def metadata(self, key="default"):
        key = self.key if key == "default" else key
        return [("authorization", f"Bearer {key}")] if key else []


@pytest.fixture(scope="module")
def servers(tmp_path_factory, pki):
    workdir = tmp_path_factory.mktemp("servers")
    p = str(pki)
    tls = [f"--tls_cert={p}/server.pem", f"--tls_key={p}/server.key"]
    started = []
    try:
        started.append(Server(workdir, 0, pki))
        started.append(Server(workdir, 1, pki, flags=[*tls, f"--api_keys_file={p}/keys.txt"],
                              cli_flags=[f"--tls_ca={p}/ca.pem"], key=KEY))
        started.append(Server(workdir, 2, pki, flags=[*tls, f"--tls_client_ca={p}/ca.pem"],
                              cli_flags=[f"--tls_ca={p}/ca.pem", f"--tls_cert={p}/client.pem",
                                         f"--tls_key={p}/client.key"], client_cert=True))
        for s in started:
            s.wait_serving()
        yield {"plain": started[0], "keys": started[1], "mtls": started[2]}
    finally:
        for s in started:
            assert s.replica.stop() == 0, s.replica.log()


def embed(server, stubs, text=TEXT, channel=None, metadata=None, timeout=60):
    pb = stubs["longenc.v1.encoder_pb2"]
    ch = channel or server.channel()
    try:
        stub = stubs["longenc.v1.encoder_pb2_grpc"].EncoderStub(ch)
        response = stub.Embed(pb.EmbedRequest(documents=[pb.Document(text=text)]),
                              metadata=server.metadata() if metadata is None else metadata,
                              timeout=timeout)
        return np.array(response.embeddings[0].values, dtype=np.float32)
    finally:
        if channel is None:
            ch.close()


@pytest.fixture(scope="module")
def reference(servers, stubs):
    return embed(servers["plain"], stubs)


@contextlib.contextmanager
def good_traffic(server, stubs, reference):
    """Well-formed requests on another thread for as long as the block runs (at least one);
    each must return the reference embedding."""
    stop = threading.Event()
    results, errors = [], []

    def run():
        ch = server.channel()
        try:
            while not stop.is_set() or not results:
                results.append(embed(server, stubs, channel=ch))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            ch.close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not thread.is_alive(), "the concurrent good request did not finish"
    assert not errors, errors
    assert results
    for r in results:
        np.testing.assert_allclose(r, reference, atol=ATOL)


def rpc_error(call):
    import grpc

    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# ------------------------------------------------------------------ TLS and API keys


def test_tls_client_with_key_gets_the_reference_embedding(servers, stubs, reference):
    s = servers["keys"]
    with good_traffic(s, stubs, reference):
        np.testing.assert_allclose(embed(s, stubs), reference, atol=ATOL)
        np.testing.assert_allclose(embed(s, stubs, metadata=s.metadata(OTHER_KEY)), reference,
                                   atol=ATOL)


def test_grpcio_access_token_credentials_send_the_key(servers, stubs, reference):
    import grpc

    s = servers["keys"]
    creds = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=(s.pki / "ca.pem").read_bytes()),
        grpc.access_token_call_credentials(KEY))
    with good_traffic(s, stubs, reference), grpc.secure_channel(s.address, creds) as ch:
        np.testing.assert_allclose(embed(s, stubs, channel=ch, metadata=[]), reference,
                                   atol=ATOL)


@pytest.mark.parametrize("key,message", [(None, MISSING), (WRONG_KEY, INVALID)])
def test_missing_or_wrong_key_is_unauthenticated(servers, stubs, reference, key, message):
    import grpc

    s = servers["keys"]
    metadata = s.metadata(key)
    before = s.replica.value("longenc_request_duration_seconds_count", method="Embed",
                             code="UNAUTHENTICATED")
    with good_traffic(s, stubs, reference):
        e = rpc_error(lambda: embed(s, stubs, metadata=metadata))
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED
        assert e.details() == message
        assert WRONG_KEY not in (e.details() or "")
        # A scheme other than Bearer is no credential either.
        if key is None:
            e = rpc_error(lambda: embed(s, stubs, metadata=[("authorization", f"Basic {KEY}")]))
            assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, MISSING)
    after = s.replica.value("longenc_request_duration_seconds_count", method="Embed",
                            code="UNAUTHENTICATED")
    assert after - before == (2 if key is None else 1)
    np.testing.assert_allclose(embed(s, stubs), reference, atol=ATOL)  # still serving


def test_health_needs_no_key(servers, stubs, reference):
    s = servers["keys"]
    with good_traffic(s, stubs, reference), s.channel() as ch:
        for service in ["", "longenc.v1.Encoder"]:
            assert health_status(ch, service) == "SERVING"


def test_plaintext_client_against_tls_server_fails_and_server_stays_up(servers, stubs,
                                                                        reference):
    import grpc

    s = servers["keys"]
    with good_traffic(s, stubs, reference):
        with s.channel(tls=False) as ch:
            e = rpc_error(lambda: embed(s, stubs, channel=ch, timeout=10))
        # What gRPC really answers: the TLS handshake fails, the channel never connects.
        assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
    np.testing.assert_allclose(embed(s, stubs), reference, atol=ATOL)


def test_tls_client_distrusting_the_server_certificate_fails(servers, stubs, reference):
    import grpc

    s = servers["keys"]
    with good_traffic(s, stubs, reference):
        with s.channel(ca="otherca") as ch:
            e = rpc_error(lambda: embed(s, stubs, channel=ch, timeout=10))
        assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())


# ------------------------------------------------------------------ mutual TLS


def test_mtls_client_certificate_accepted(servers, stubs, reference):
    s = servers["mtls"]
    with good_traffic(s, stubs, reference):
        np.testing.assert_allclose(embed(s, stubs), reference, atol=ATOL)


@pytest.mark.parametrize("variant", ["no client certificate", "certificate of another CA"])
def test_mtls_rejects_clients_without_a_certificate_of_the_ca(servers, stubs, reference,
                                                              variant):
    import grpc

    s = servers["mtls"]
    with good_traffic(s, stubs, reference):
        if variant == "no client certificate":
            ch = s.channel(client_cert=False)
        else:
            ch = s.channel(cert="stranger")
        with ch:
            e = rpc_error(lambda: embed(s, stubs, channel=ch, timeout=10))
        assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
    np.testing.assert_allclose(embed(s, stubs), reference, atol=ATOL)


# ------------------------------------------------------------------ the CLI


def cli_embedding(result):
    assert result.returncode == 0, result.stderr
    return np.array(json.loads(result.stdout.splitlines()[0])["embedding"], dtype=np.float32)


def test_cli_with_tls_and_key(servers, stubs, reference):
    s = servers["keys"]
    base = [f"--server={s.address}", *s.cli_flags]
    with good_traffic(s, stubs, reference):
        health = cli("health", *base)  # TLS, no key needed
        assert (health.returncode, health.stdout.strip()) == (0, "SERVING"), health.stderr
        np.testing.assert_allclose(cli_embedding(cli("embed", *base, f"--api_key={KEY}", TEXT)),
                                   reference, atol=ATOL)
        from_env = cli("embed", *base, TEXT, env={"LONGENC_API_KEY": OTHER_KEY})
        np.testing.assert_allclose(cli_embedding(from_env), reference, atol=ATOL)

        missing = cli("embed", *base, TEXT, env={"LONGENC_API_KEY": ""})
        assert missing.returncode == 5, missing.stderr
        assert f"UNAUTHENTICATED: {MISSING}" in missing.stderr
        wrong = cli("info", *base, f"--api_key={WRONG_KEY}")
        assert wrong.returncode == 5, wrong.stderr
        assert f"UNAUTHENTICATED: {INVALID}" in wrong.stderr
        assert WRONG_KEY not in wrong.stderr

        plain = cli("health", f"--server={s.address}", "--timeout=5s")
        assert plain.returncode == 4, plain.stderr
        bad_ca = cli("health", f"--server={s.address}", f"--tls_ca={s.pki}/not-pem.txt")
        assert bad_ca.returncode == 2 and f"--tls_ca={s.pki}/not-pem.txt" in bad_ca.stderr


def test_cli_with_mutual_tls(servers, stubs, reference):
    s = servers["mtls"]
    with good_traffic(s, stubs, reference):
        np.testing.assert_allclose(
            cli_embedding(cli("embed", f"--server={s.address}", *s.cli_flags, TEXT)),
            reference, atol=ATOL)
        no_cert = cli("health", f"--server={s.address}", f"--tls_ca={s.pki}/ca.pem",
                      "--timeout=5s")
        assert no_cert.returncode == 4, no_cert.stderr


def test_metrics_listen_on_their_own_plain_http_address(servers, stubs, reference):
    import urllib.request

    s = servers["keys"]
    with good_traffic(s, stubs, reference):
        # /metrics: plain HTTP on --metrics_address (127.0.0.1:P here), apart from the TLS gRPC
        # port, which answers no HTTP/1 request.
        assert s.replica.metrics_port != s.replica.port
        assert s.replica.value("longenc_request_duration_seconds_count", method="Embed",
                               code="OK") >= 1
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{s.replica.port}/metrics", timeout=10)
    assert "metrics on 127.0.0.1:" in s.replica.log()


# ------------------------------------------------------------------ start-up refusal


def bad_start_cases(p):
    cert, key = f"--tls_cert={p}/server.pem", f"--tls_key={p}/server.key"
    return {
        "missing cert": ([f"--tls_cert={p}/absent.pem", key],
                         f"--tls_cert={p}/absent.pem: cannot read: No such file or directory"),
        "unreadable key": ([cert, f"--tls_key={p}"], f"--tls_key={p}: cannot read: is a directory"),
        "cert not PEM": ([f"--tls_cert={p}/not-pem.txt", key],
                         f"--tls_cert={p}/not-pem.txt: not a PEM certificate"),
        "key not PEM": ([cert, f"--tls_key={p}/not-pem.txt"],
                        f"--tls_key={p}/not-pem.txt: not an unencrypted PEM private key"),
        "key of another cert": ([cert, f"--tls_key={p}/client.key"],
                                f"--tls_key={p}/client.key: does not match the certificate of "
                                f"--tls_cert={p}/server.pem"),
        "cert without key": ([cert], f"--tls_cert={p}/server.pem: needs --tls_key"),
        "client CA without TLS": ([f"--tls_client_ca={p}/ca.pem"],
                                  f"--tls_client_ca={p}/ca.pem: mutual TLS needs --tls_cert"),
        "client CA not PEM": ([cert, key, f"--tls_client_ca={p}/not-pem.txt"],
                              f"--tls_client_ca={p}/not-pem.txt: not a PEM certificate"),
        "missing keys file": ([f"--api_keys_file={p}/absent-keys"],
                              f"--api_keys_file={p}/absent-keys: cannot read"),
        "keys file without keys": ([f"--api_keys_file={p}/empty-keys.txt"],
                                   f"--api_keys_file={p}/empty-keys.txt: no keys"),
    }


@pytest.mark.parametrize("case", list(bad_start_cases("P")))
def test_bad_flag_files_refuse_start(servers, stubs, reference, pki, tmp_path, case):
    flags, message = bad_start_cases(str(pki))[case]
    port_file = tmp_path / "port"
    with good_traffic(servers["plain"], stubs, reference):
        result = subprocess.run(
            [str(SERVER), "--host=127.0.0.1", "--port=0", f"--port_file={port_file}",
             "--metrics_address=127.0.0.1:0", f"--model_dir={MODEL_DIR}", *flags],
            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not port_file.exists()  # refused before listening (no health SERVING ever)
