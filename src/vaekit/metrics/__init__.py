"""Metrics of trained representations; ``vaekit.metrics.disentanglement`` holds disentanglement_lib's."""
