"""Curvature statistics (diagonal Fisher, K-FAC factors), their storage and penalties."""
