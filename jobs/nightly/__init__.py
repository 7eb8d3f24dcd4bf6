"""The nightly run: set-based SQL over the whole base, one transaction per run."""

from jobs.nightly.records import RunReport
from jobs.nightly.runner import RunOptions, run_nightly

__all__ = ["RunOptions", "RunReport", "run_nightly"]
