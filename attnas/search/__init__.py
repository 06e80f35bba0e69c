"""Selection over a trained supernet: evolutionary search (SPOS) and export of sub-networks.

* :mod:`attnas.search.evolution` -- :class:`EvolutionSearch` (population, top-k, mutation,
  crossover, FLOPs/parameter :class:`Constraint`), :class:`SupernetEvaluator` (BN
  recalibration on training batches, then validation accuracy), :class:`SelectionContext`.
* :mod:`attnas.search.export` -- :func:`export_subnet`: the stand-alone network of an
  architecture with the weights it inherits from the supernet.
"""
from attnas.search.evolution import (Constraint, EvolutionResult, EvolutionSearch, SelectionContext,
                                     SupernetEvaluator, recalibrate_bn, take_images)
from attnas.search.export import export_subnet, inherit_path, inherit_weights, supernet_key_map

__all__ = [
    "Constraint", "EvolutionResult", "EvolutionSearch", "SelectionContext", "SupernetEvaluator",
    "recalibrate_bn", "take_images", "export_subnet", "inherit_path", "inherit_weights", "supernet_key_map",
]
