"""Typed arguments of the Serve application (the ``args:`` block of ``serve_configs/*.yaml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gram_ray.client import TOKEN_ENV
from gram_ray.reasoning import SamplingConfig
from gram_ray.scorer import ScorerConfig, renamed_fields


class BatchingConfig(BaseModel):
    """``@serve.batch`` settings of the scorer deployment: concurrent pairs merge into one batch."""

    model_config = ConfigDict(extra="forbid")

    max_batch_pairs: int = Field(32, gt=0, description="pairs per batch; 1 disables batching")
    batch_wait_timeout_s: float = Field(0.01, ge=0, description="how long a batch waits to fill")

    _renamed = model_validator(mode="before")(renamed_fields({"max_batch_size": "max_batch_pairs"}))


class GrpcConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="bind address; 0.0.0.0 or [::] to accept remote clients (needs auth)")
    port: int = Field(50051, ge=0, lt=65536)
    max_message_bytes: int = Field(64 * 1024 * 1024, gt=0)
    tls_cert_file: str | None = Field(None, description="PEM certificate chain: serve gRPC over TLS (with tls_key_file)")
    tls_key_file: str | None = Field(None, description="PEM private key of tls_cert_file")

    @model_validator(mode="after")
    def _tls_pair(self) -> GrpcConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("grpc.tls_cert_file and grpc.tls_key_file: set both or neither")
        return self


class AuthConfig(BaseModel):
    """A bearer token required on every call (gram_ray/serve/auth.py)."""

    model_config = ConfigDict(extra="forbid")

    token_env: str | None = Field(TOKEN_ENV, description="environment variable holding the token")
    token_file: str | None = Field(None, description="file holding the token (takes precedence over token_env)")
    allow_insecure: bool = Field(
        False, description="serve beyond loopback without a token (only behind your own network controls)"
    )


class LimitsConfig(BaseModel):
    """Request size limits; beyond them a request gets RESOURCE_EXHAUSTED."""

    model_config = ConfigDict(extra="forbid")

    max_pairs_per_request: int = Field(1024, gt=0)
    max_rank_responses: int = Field(64, ge=2)
    max_reward_items: int = Field(1024, gt=0)
    max_text_chars: int = Field(200_000, gt=0, description="per prompt or response (before token truncation)")


class ReasoningConfig(BaseModel):
    """GRAM-R² on the service: ``CompareRequest.reasoning`` samples rationales with these settings."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="serve reasoning requests (the model should be a GRAM-R² reasoner)")
    max_votes: int = Field(8, gt=0, description="largest k a request may ask for")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)


class OpenRLHFConfig(BaseModel):
    """The HTTP route ``POST /get_reward`` that OpenRLHF's remote reward client calls."""

    model_config = ConfigDict(extra="forbid")

    policy_template: str = Field(
        "auto", description="how to read the policy's chat-templated prompts: auto (ChatML, Llama 3, Gemma, Mistral "
        "[INST], Phi-3, DeepSeek, plain text), one of those names, or a model spec / tokenizer directory whose chat "
        "template decides (gram_ray/policy_chat.py)",
    )
    labels: Literal["reference", "ignore"] = Field(
        "reference", description="reference: the request's labels (OpenRLHF's --label_key column) are the reference "
        "answers each response is judged against; ignore: responses to one prompt are scored within their group",
    )
    group_scoring: Literal["anchor", "circular", "all_pairs"] = Field(
        "anchor", description="without labels, how a prompt's responses are scored: anchor (each against the "
        "first; n-1 comparisons), circular (each against the next; n), all_pairs (Bradley-Terry; n(n-1)/2)",
    )


class AppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    grpc: GrpcConfig = Field(default_factory=GrpcConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig)
    openrlhf: OpenRLHFConfig = Field(default_factory=OpenRLHFConfig)
