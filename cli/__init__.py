"""memberlog's query CLI: read one service member's whole log from CloudWatch Logs."""
