"""Every limit the driver obeys, in one place.

CloudWatch Logs values follow the current PutLogEvents API reference; the Docker values follow
moby's daemon/logger (plugin adapter and copier).
"""

# --- CloudWatch Logs PutLogEvents -------------------------------------------------------------
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26  # counted per event on top of the message's UTF-8 bytes
MAX_EVENT_BYTES = 1_048_576  # one event (message + overhead); 256 KiB before 2025
# Largest message that still fits one event and one batch.
MAX_MESSAGE_BYTES = min(MAX_EVENT_BYTES, MAX_BATCH_BYTES) - EVENT_OVERHEAD_BYTES
MIN_MESSAGE_BYTES = 256  # smallest max-event-size we accept: below that lines shatter
MAX_BATCH_SPAN_MS = 24 * 3600 * 1000

# --- CloudWatch Logs names ---------------------------------------------------------------------
MAX_GROUP_NAME = 512
MAX_STREAM_NAME = 512
RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
     3288, 3653}
)  # fmt: skip

# --- Docker FIFO -------------------------------------------------------------------------------
FRAME_HEADER_BYTES = 4
# Docker cuts lines at 16 KiB for plugins; anything far larger is a corrupt length prefix.
MAX_FRAME_BYTES = 1 << 20
READ_CHUNK_BYTES = 1 << 20
PIPE_BYTES = 1 << 20  # asked of the kernel with F_SETPIPE_SZ so the daemon rarely waits on us

# --- Driver behaviour --------------------------------------------------------------------------
DEFAULT_FLUSH_INTERVAL_S = 1.0
DEFAULT_MEMBER_WAIT_S = 30.0
MEMBER_FILE_WAIT_S = 2.0  # how long the member file may lag behind StartLogging
MEMBER_MARKER_SCAN_LINES = 100  # the startup line must be among the first lines
MAX_HELD_BYTES = 16 << 20  # lines held while the member is unknown
READ_AHEAD_BYTES = 16 << 20  # FIFO bytes read but not yet decoded; past it the reader waits
SPOOL_MAX_BYTES = 64 << 20  # per stream; past it the reader waits (Docker's blocking mode)
STOP_DRAIN_TIMEOUT_S = 20.0  # StopLogging answers within this even if shipping lags
SHIP_RETRY_MAX_S = 30.0

# --- Multi-line events -------------------------------------------------------------------------
# A pending multi-line event waits for its next line at most this many flush-intervals (awslogs:
# 2 x its force-flush interval), then ships as it is.
MULTILINE_MAX_WAIT_INTERVALS = 2

# --- The driver's own log (SELF_LOG_GROUP) -----------------------------------------------------
SELF_LOG_SEND_INTERVAL_S = 5.0  # warnings reach CloudWatch within this (watchtower batches)
SELF_LOG_FLUSH_TIMEOUT_S = 5.0  # at exit, wait at most this for them to go out
SELF_LOG_CONNECT_TIMEOUT_S = 3.0
SELF_LOG_READ_TIMEOUT_S = 10.0
SELF_LOG_GROUP_RETRY_MAX_S = 60.0  # creating the group is retried with backoff up to this

# --- Metrics and /health (METRICS_ADDR) --------------------------------------------------------
HEALTH_MAX_LAG_S = 60.0  # /health fails when a stream's oldest unshipped line is older
