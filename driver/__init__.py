"""memberlog's Docker log-driver plugin: FIFO -> decode -> member -> spool -> batch -> ship."""
