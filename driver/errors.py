"""The error a bad ``--log-opt`` raises, wherever it is found.

options.py checks the options themselves; formats.py finds out only when it builds a container's
format=json fields that they leave no room for a line. Both raise this one type, which the
plugin turns into ``docker run``'s error, so it lives apart from both: neither imports the other.
"""

from __future__ import annotations


class OptionError(ValueError):
    """A log-opt that memberlog cannot accept; the text names the option."""
