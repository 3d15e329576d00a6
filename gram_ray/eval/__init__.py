"""Evaluation: official benchmark scoring rules (:mod:`gram_ray.eval.scoring`)."""
