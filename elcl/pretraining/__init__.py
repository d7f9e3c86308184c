"""Ontology self-alignment pretraining (SapBERT-style) of the bi-encoder's transformer.

Only ontology names are read: the pass is fair to run before any task of a continual
sequence, because it never sees a corpus mention.
"""
