"""Inference-time defences (API-Net's anti-perturbation inference) and how attacks meet them."""
