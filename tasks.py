"""invoke tasks of this checkout: the same collection as the `assemblyzero` command."""

from assemblyzero.cli import ns

__all__ = ["ns"]
