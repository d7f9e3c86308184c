"""Corpora (PubTator), ontologies and their statistics."""
