"""Wanda, SparseGPT, per-row magnitude and gradient head importance: one-shot pruning from
calibration inputs, as language models are pruned today."""

from .engine import HeadImportance, MagnitudeRow, SparseGPT, Wanda

__all__ = ["HeadImportance", "MagnitudeRow", "SparseGPT", "Wanda"]
