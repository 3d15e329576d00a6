"""Ray Train jobs for GRAM: stage 1 (pre-training on unlabeled pairs), stage 2 (verdict fine-tuning
with label smoothing), task adaptation (stage 2 from a GRAM checkpoint), a Bradley-Terry
discriminative baseline and GRAM-R² (prover, reasoner, self-training). The stages are one table in
:mod:`gram_ray.train.stages`; ``gram-ray train train_configs/<name>.yaml`` runs :func:`gram_ray.train.run.train`.
"""
