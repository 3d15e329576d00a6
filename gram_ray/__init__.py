"""gram-ray: a distributed GRAM (generative foundation reward model) service.

The judge core lives in :mod:`gram_ray.judge` (templates, verdict tokens, scoring rule),
:mod:`gram_ray.losses` (pure tensor losses) and :mod:`gram_ray.scorer` (batched scoring).
"""

__version__ = "0.1.0"
