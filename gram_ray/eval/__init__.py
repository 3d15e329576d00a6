"""Evaluation: ``gram-ray eval`` (:mod:`gram_ray.eval.run`: benchmark files → predictions, metrics,
report) and the official benchmark scoring rules (:mod:`gram_ray.eval.metrics`)."""
