"""gram-ray: a distributed GRAM (generative foundation reward model) service.

Layers, bottom up: :mod:`gram_ray.judge` (templates, pairs, verdict tokens and rule; no model),
:mod:`gram_ray.encoding` (token budgets, token ids, padding; no model), :mod:`gram_ray.losses`
(pure tensor losses), :mod:`gram_ray.models` and :mod:`gram_ray.head` (loading, the verdict head),
:mod:`gram_ray.scorer` (the scoring engine), then the users of the engine: serving
(:mod:`gram_ray.serve`), training (:mod:`gram_ray.train`), evaluation (:mod:`gram_ray.eval`) and the
shared Ray actor pool (:mod:`gram_ray.pool`).
"""

__version__ = "0.1.0"
