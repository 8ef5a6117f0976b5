"""assemblyzero: run a planning backlog through LLM workflows in parallel.

Kept empty on purpose: `python -m assemblyzero.worker` imports this package
once per item, so nothing here may cost start-up time.
"""

__version__ = "0.2.0"
