"""Credentials for the reward service: a bearer token on every call, TLS on the gRPC port.

A token is read from the file ``auth.token_file`` or the environment variable ``auth.token_env``
(``GRAM_RAY_AUTH_TOKEN`` by default). With a token, every gRPC call needs the metadata
``authorization: Bearer <token>`` (else UNAUTHENTICATED) and every HTTP route (``POST /get_reward``,
``GET /health``) the same header (else 401); probes use Serve's own ``/-/healthz``. A service bound to anything but
loopback refuses to start without a token unless ``auth.allow_insecure`` says so: an RLHF
rollout cluster calls in over the network, and an open reward service is a hole in it.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

import grpc

from gram_ray.serve.config import AuthConfig

METADATA_KEY = "authorization"


def load_token(config: AuthConfig) -> str | None:
    if config.token_file:
        token = Path(config.token_file).read_text().strip()
        if not token:
            raise ValueError(f"auth.token_file: {config.token_file} is empty")
        return token
    return os.environ.get(config.token_env) or None if config.token_env else None


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, config: AuthConfig, what: str) -> None:
    """Refuse to listen beyond loopback without credentials (unless explicitly allowed)."""
    if token is None and not is_loopback(host) and not config.allow_insecure:
        raise ValueError(
            f"{what}: binding {host!r} (reachable from other machines) without an auth token; set "
            f"{config.token_env or 'auth.token_env'} or auth.token_file, or auth.allow_insecure: true"
        )


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an ``authorization`` value carries the token (constant-time comparison)."""
    if token is None:
        return True
    return header is not None and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED for every call without ``authorization: Bearer <token>``."""

    def __init__(self, token: str):
        self.token = token

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "authorization: missing or wrong bearer token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(self, continuation, handler_call_details):
        metadata = dict(handler_call_details.invocation_metadata or ())
        if authorized(metadata.get(METADATA_KEY), self.token):
            return await continuation(handler_call_details)
        return self._deny


def server_credentials(cert_file: str, key_file: str) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(Path(key_file).read_bytes(), Path(cert_file).read_bytes())])
