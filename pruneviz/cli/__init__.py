"""Command line: python -m pruneviz {run,sweep,worker,cancel,list,show,report,export,delete,
doctor,methods,sensitivity} --help."""

from .main import main

__all__ = ["main"]
