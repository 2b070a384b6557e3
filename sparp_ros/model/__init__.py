"""NOCS predictors ("backends"): the diffusion model, and the ground-truth oracle test instrument."""
from .backend import BackendError, CellView, NocsBackend, NocsPrediction, OracleBackend, make_backend

__all__ = ["BackendError", "CellView", "NocsBackend", "NocsPrediction", "OracleBackend", "make_backend"]
