"""The real HTTPS server: TLS 1.3 only, security headers, OpenAPI and problem+json errors."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess

import pytest
from tests.support.platform import ServerThread


def _client_context(server: ServerThread, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


def test_tls12_handshake_is_refused(server: ServerThread) -> None:
    ctx = _client_context(server, ssl.TLSVersion.TLSv1_2)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        pytest.raises(ssl.SSLError),
    ):
        ctx.wrap_socket(raw, server_hostname="localhost")


def test_tls13_handshake_completes_and_serves(server: ServerThread) -> None:
    ctx = _client_context(server, ssl.TLSVersion.TLSv1_3)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.3"
    # and a real request over a default (verifying) client negotiates TLS 1.3 too
    conn = http.client.HTTPSConnection("localhost", server.port, context=server.client_context())
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert response.status == 200
        assert conn.sock.version() == "TLSv1.3"  # type: ignore[union-attr]
    finally:
        conn.close()


def _s_client(server: ServerThread, flag: str) -> subprocess.CompletedProcess[str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not on PATH")
    return subprocess.run(
        [
            openssl,
            "s_client",
            "-connect",
            f"127.0.0.1:{server.port}",
            "-servername",
            "localhost",
            "-CAfile",
            str(server.ca_file),
            "-verify_return_error",
            flag,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_openssl_s_client_tls12_refused(server: ServerThread) -> None:
    result = _s_client(server, "-tls1_2")
    assert result.returncode != 0, result.stdout
    assert "TLSv1.2, Cipher is" not in result.stdout
    assert "no peer certificate available" in result.stdout  # no handshake took place


def test_openssl_s_client_tls13_accepted(server: ServerThread) -> None:
    result = _s_client(server, "-tls1_3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TLSv1.3" in result.stdout
    assert "Verify return code: 0 (ok)" in result.stdout


async def test_hsts_and_security_headers(server: ServerThread) -> None:
    async with server.client() as client:
        for path in ("/healthz", "/api/v1/openapi.json", "/api/v1/no-such-route"):
            r = await client.get(path)
            hsts = r.headers.get("strict-transport-security", "")
            assert "max-age=" in hsts, path
            assert int(hsts.split("max-age=")[1].split(";")[0]) >= 31_536_000, path
            assert r.headers.get("x-content-type-options") == "nosniff", path
            assert "server" not in r.headers, path


async def test_openapi_is_served(server: ServerThread) -> None:
    async with server.client() as client:
        r = await client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "LabelVault API"
    assert "/healthz" in doc["paths"]


async def test_unauthenticated_request_is_a_401_problem(server: ServerThread) -> None:
    async with server.client() as client:
        r = await client.get("/api/v1/projects/not-a-uuid")
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 401
    assert {"type", "title", "detail"} <= body.keys()
    assert "Traceback" not in r.text


async def test_unknown_route_is_a_404_problem(server: ServerThread) -> None:
    async with server.client() as client:
        r = await client.get("/api/v1/definitely/not/here")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["status"] == 404
        # a wrong method is a problem too, not an HTML or plain-text page
        r = await client.delete("/healthz")
        assert r.status_code == 405
        assert r.headers["content-type"].startswith("application/problem+json")
