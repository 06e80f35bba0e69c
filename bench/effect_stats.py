"""The 95 % t-interval the effect experiments report (``bench/trionet_effect.py``, ``bench/nos_effect.py``)."""
from __future__ import annotations

import math
import statistics

#: two-sided 95 % quantiles of Student's t by degrees of freedom (1.96 beyond the table)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def ci95(xs: list[float]) -> dict:
    """Mean, sample std and the 95 % t-interval of the mean."""
    n = len(xs)
    m = statistics.fmean(xs)
    sd = statistics.stdev(xs) if n > 1 else float("nan")
    half = T975.get(n - 1, 1.96) * sd / math.sqrt(n) if n > 1 else float("nan")
    return {"n": n, "mean": round(m, 4), "std": round(sd, 4), "ci95": [round(m - half, 4), round(m + half, 4)]}
