"""dashapp's version, in a leaf module: the provenance record reads it without importing the
package's ``__init__`` (whose notebook entry imports the composition root)."""

from __future__ import annotations

__version__ = "0.1.0"
