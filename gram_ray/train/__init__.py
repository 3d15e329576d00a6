"""Ray Train jobs for GRAM: stage 1 (pre-training on unlabeled pairs), stage 2 (verdict fine-tuning
with label smoothing), task adaptation (stage 2 from a GRAM checkpoint), and a Bradley-Terry
discriminative baseline. ``gram-ray train train_configs/<name>.yaml`` runs :func:`gram_ray.train.run.train`.
"""
