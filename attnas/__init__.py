"""attnas: neural architecture search in which attention does the work."""
import os as _os

# oneDNN (PyTorch's CPU convolutions) caches 1,024 compiled kernels by default; a DARTS or
# NAS-Bench-201 supernet in the channels-last layout needs more (every edge and candidate,
# forward and backward), and re-creating evicted kernels made a step up to 3.5x slower
# (bench/itnas_step_cost.py, two supernets in one process).  Read once, before the first
# convolution; an explicit setting in the environment wins.
_os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16384")

__version__ = "0.1.0"
