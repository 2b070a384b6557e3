"""What inference loads: the NOCS predictors ("backends": the diffusion model, and the ground-truth
oracle test instrument), the small networks that judge view angles and pair azimuths, their configs
and safetensors weights. Their training (data engine, loops, command lines) is ``sparp_ros.training``,
which imports this package and never the other way."""
from .backend import BackendError, CellView, NocsBackend, NocsPrediction, OracleBackend, make_backend

__all__ = ["BackendError", "CellView", "NocsBackend", "NocsPrediction", "OracleBackend", "make_backend"]
