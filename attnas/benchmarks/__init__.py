"""Tabular benchmark look-ups.

* :class:`NB201Bench` -- NAS-Bench-201, all 15,625 cells, validation and test
  accuracy on CIFAR-10, CIFAR-100 and ImageNet16-120 (200-epoch results).
* :class:`MacroBench` -- NAS-Bench-Macro, 6,561 chains of 8 layers on CIFAR-10.
* :class:`NB101Sample` -- a 500-architecture sample of NAS-Bench-101.
* :class:`Darts214` -- 214 DARTS-space genotypes with their CIFAR-10 test accuracy.

Every table is read from the data folder (``--data-dir`` or ``$ATTNAS_DATA_DIR``)
with :func:`attnas.data.paths.require_file`, parsed once per process and
checked against its space: a file that does not match raises
:class:`BenchmarkFileError`.
"""
from __future__ import annotations

from attnas.errors import AttnasError


class BenchmarkFileError(AttnasError):
    """A benchmark file whose content does not match its space or format."""


from attnas.benchmarks.darts214 import Darts214, DartsRecord, genotype_to_architecture, parse_genotype  # noqa: E402
from attnas.benchmarks.macro import MacroBench  # noqa: E402
from attnas.benchmarks.nb101 import NB101_OPS, NB101Record, NB101Sample, prune_nb101  # noqa: E402
from attnas.benchmarks.nb201 import (NB201_DATASETS, NB201Bench, nb201_all_architectures,  # noqa: E402
                                     nb201_index)

__all__ = [
    "BenchmarkFileError", "NB201Bench", "NB201_DATASETS", "nb201_index", "nb201_all_architectures",
    "MacroBench", "NB101Sample", "NB101Record", "NB101_OPS", "prune_nb101",
    "Darts214", "DartsRecord", "parse_genotype", "genotype_to_architecture",
]
