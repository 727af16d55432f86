"""rcahook: find the change that caused an incident, and warn before a risky one ships."""
from __future__ import annotations

__version__ = "0.1.0"
