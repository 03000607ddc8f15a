"""The assessment report: self-contained HTML built from a run's metrics and figures."""
from advkeras.report.html import render_report

__all__ = ["render_report"]
