"""Credentials on a real `serve run` of the shipped YAML: a bearer token (from a file named in the
config) on every gRPC call and HTTP route, and TLS on the gRPC port with a certificate made here."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from conftest import post_json

from gram_ray.client import GramClient, RetryPolicy

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def secured(tiny_model_dir, tmp_path_factory):
    import ray
    from ray import serve

    from gram_ray.serve.launch import start_on_free_ports

    tmp = tmp_path_factory.mktemp("secured")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    (tmp / "token").write_text(TOKEN + "\n")
    args = {
        "scorer": {"model": str(tiny_model_dir), "dtype": "float32"},
        "grpc": {"tls_cert_file": str(cert), "tls_key_file": str(key)},
        "auth": {"token_env": "GRAM_RAY_TEST_UNSET_TOKEN", "token_file": str(tmp / "token")},
    }
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    started = start_on_free_ports(ROOT / "serve_configs" / "gram.yaml", tmp, args=args, timeout_s=180,
                                  judge={"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}},
                                  token=TOKEN, tls_ca_file=str(cert))
    yield {"address": started.grpc, "http": started.http, "cert": str(cert)}
    serve.shutdown()
    ray.shutdown()


def test_grpc_needs_the_token_and_tls(secured):
    address, cert, quick = secured["address"], secured["cert"], RetryPolicy(attempts=1)
    with GramClient(address, token=TOKEN, tls_ca_file=cert, timeout_s=30) as good:
        assert good.health()["status"] == "SERVING"
        assert 0.0 < good.compare([("2+2?", "4", "5")])[0]["p_a_better"] < 1.0
    for token in ("", "wrong"):
        with GramClient(address, token=token, tls_ca_file=cert, retry=quick, timeout_s=30) as stranger:
            for call in (stranger.health, lambda: stranger.compare([("q", "a", "b")])):
                with pytest.raises(grpc.RpcError) as err:
                    call()
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with GramClient(address, token=TOKEN, retry=quick, timeout_s=5) as plain:  # no TLS: cannot talk to the port
        with pytest.raises(grpc.RpcError) as err:
            plain.health()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_http_reward_route_needs_the_token(secured):
    url, body = secured["http"] + "/get_reward", {"query": ["q a"], "prompts": ["q "], "labels": ["b"]}
    status, out = post_json(url, body)
    assert status == 401 and "authorization" in out["error"]
    status, out = post_json(url, body, headers={"authorization": "Bearer wrong"})
    assert status == 401
    status, out = post_json(url, body, headers={"authorization": f"Bearer {TOKEN}"})
    assert status == 200 and len(out["rewards"]) == 1
    status, out = post_json(url + f"?token={TOKEN}", body)  # OpenRLHF's client sends no headers
    assert status == 200
    status, out = post_json(url + "?token=wrong", body)
    assert status == 401


def test_every_http_route_needs_the_token(secured):
    def get(path: str, headers: dict | None = None) -> int:
        request = urllib.request.Request(secured["http"] + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert get("/health") == 401 and get("/anything") == 401
    assert get("/health", {"authorization": f"Bearer {TOKEN}"}) == 200
