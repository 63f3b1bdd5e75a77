"""Resource stage: FLOPs, parameters, wall time and peak memory of every stage of a run."""

from .flops import count_flops, forward_flops, parameter_count
from .ledger import StageCost, combine_stages, measure
from .memory import peak_memory_bytes, reset_peak_memory

__all__ = [
    "StageCost",
    "combine_stages",
    "forward_flops",
    "measure",
    "parameter_count",
    "peak_memory_bytes",
    "reset_peak_memory",
    "count_flops",
]
