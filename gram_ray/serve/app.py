"""Build the Serve application: ``serve run serve_configs/gram.yaml``.

The YAML's ``args:`` block is validated as :class:`~gram_ray.serve.config.AppConfig`; per-deployment
settings (``autoscaling_config``, ``ray_actor_options``, ``max_ongoing_requests``) sit in the YAML's
``deployments:`` list under the names ``Judge`` and ``RewardComparator``.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from gram_ray.serve.config import AppConfig
from gram_ray.serve.ingress import ComparatorIngress
from gram_ray.serve.scorer_deployment import ScorerDeployment


def build_app(args: dict[str, Any]) -> Application:
    """The builder ``serve run`` calls with the YAML's ``args:`` (Serve requires exactly one parameter)."""
    return build_application(AppConfig(**(args or {})))


def build_application(
    config: AppConfig,
    scorer_options: dict[str, Any] | None = None,
    ingress_options: dict[str, Any] | None = None,
) -> Application:
    """The application graph. ``*_options`` (``.options()`` of each deployment) serve Python callers;
    ``serve run`` takes the same settings from the YAML's ``deployments:`` list."""
    scorer = ScorerDeployment.options(**(scorer_options or {})).bind(config.scorer.model_dump(), config.batching.model_dump())
    return ComparatorIngress.options(**(ingress_options or {})).bind(scorer, config.model_dump())
