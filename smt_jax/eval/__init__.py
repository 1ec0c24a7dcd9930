"""Evaluation of trained teachers and RNNs."""
