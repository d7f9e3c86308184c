"""Accuracy matrices, forgetting metrics and reports over runs."""
