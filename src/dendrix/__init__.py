"""dendrix: spiking neurons beyond LIF — dendritic, resonating and gated neurons for PyTorch.

Time-first tensors ``[T, B, *]`` everywhere. Every neuron has ``forward``, ``init_state``, ``step`` and ``run``.
"""

import logging

from . import surrogate
from .recording import Recording, record
from .registry import available, describe, register, spiking_layer, spiking_neuron
from .validation import checks, checks_enabled, set_checks

__version__ = "0.3.0"  # the one place of the version (pyproject.toml reads it)

# A library logs and never configures output: records go nowhere unless the application adds a handler.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["available", "describe", "register", "spiking_layer", "spiking_neuron", "record", "Recording", "surrogate",
           "set_checks", "checks", "checks_enabled", "__version__"]
