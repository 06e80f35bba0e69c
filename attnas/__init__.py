"""attnas: neural architecture search in which attention does the work."""
__version__ = "0.1.0"
