"""``python -m memberlog.driver``: same as the ``memberlog-driver`` command."""

from .server import main

main()
