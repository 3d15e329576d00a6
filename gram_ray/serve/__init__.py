"""The reward service: Ray Serve deployments behind the gRPC comparator API (``gram.v1``).

``serve run serve_configs/gram.yaml`` builds the application with :func:`gram_ray.serve.app.build_app`.
"""
