"""elcl: continual medical entity linking with curvature penalties (EWC, K-FAC)."""

__version__ = "0.1.0"
