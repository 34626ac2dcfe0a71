"""lcnn_core: low-curvature neural networks (Srinivas et al., 2022) for a reproducibility book."""
__version__ = "0.1.0"
