"""Analyses of search runs that the papers report (IT-NAS Sec. 4.3, App. A.7-A.8).

* :mod:`attnas.analysis.ranking` -- ranking consistency of a selection indicator
  (IT-NAS attention, DARTS alpha, ...) with the NAS-Bench-201 ``best_acc`` of Eq. 9,
  per edge (Kendall tau); command ``attnas analyze ranking``.
"""
from __future__ import annotations

from attnas.analysis.ranking import (ConsistencyReport, best_acc_table, kendall_tau, load_run_scores,
                                     ranking_consistency)

__all__ = ["ConsistencyReport", "best_acc_table", "kendall_tau", "load_run_scores", "ranking_consistency"]
