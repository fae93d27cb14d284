"""Small self-contained experiments that reproduce figures from the papers vaekit implements."""
