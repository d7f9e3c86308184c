"""Sparse candidate generation (character n-gram TF-IDF over ontology names)."""
