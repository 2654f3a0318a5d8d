"""Catalogues kept as data: the LLM models skills may use (``models.yaml``)."""
