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
PIPE_BYTES = 1 << 20  # asked of the kernel with F_SETPIPE_SZ so the daemon rarely waits on us

# --- Journal (driver/journal.py, driver/spool.py) --------------------------------------------
JOURNAL_VERSION = 1  # the on-disk format; a driver refuses journals newer than it knows
SEGMENT_BYTES = 4 << 20  # journal file size: the unit deleted once shipped (or dropped)
SPLICE_BYTES = 1 << 20  # moved from a FIFO to its journal per splice(2)
READER_TURN_BYTES = 4 << 20  # per FIFO per poll round, so one busy container cannot starve others
COALESCE_BYTES = 256 << 10  # a poll round that moved less than this...
COALESCE_S = 0.005  # ...is followed by this pause, so the next splice takes many lines at once
WRITE_FDS = 64  # journal files the reader keeps open (LRU), whatever the number of containers
DECODE_CHUNK_BYTES = 1 << 20  # journal bytes read and decoded at a time when shipping
DECODE_MIN_BYTES = 64 << 10  # shipping reads up to a batch's worth, but never less than this
DEFAULT_SPOOL_MAX_BYTES = 1 << 30  # SPOOL_MAX_BYTES: unshipped journal bytes, whole host
BLOCK_MIN_BACKLOG_BYTES = 1 << 20  # SPOOL_FULL=block stalls only FIFOs with at least this behind
DISK_FULL_RETRY_S = 1.0  # a FIFO paused on a full disk (or budget) is tried again after this
# FSYNC_INTERVAL's default: a power cut loses at most about this much of what was journaled
# (the ledger is synced at every commit whatever it says).
DEFAULT_FSYNC_INTERVAL_S = 1.0
LEDGER_RETRY_S = 1.0  # a ledger that could not be written is tried again this often
READ_ATTEMPTS = 5  # journal reads failing at one place before the rest of its file is given up
RESUME_RETRY_S = 5.0  # a state dir that could not be listed at start is listed again after this
JOURNAL_ORPHAN_GRACE_S = 600.0  # a journal whose FIFO is gone waits this long for a handover
HANDOVER_MAX_FDS = 253  # descriptors in one handover message (the kernel's SCM_MAX_FD)

# --- `docker logs` from the journals (driver/readlogs.py) --------------------------------------
# What a container keeps after shipping: Docker's own defaults for its local copy (cache-max-size
# x cache-max-file), kept in whole segment files; KEEP_MAX_BYTES bounds the host.
DEFAULT_KEEP_FILE_BYTES = 20 << 20
DEFAULT_KEEP_FILES = 5
DEFAULT_KEEP_MAX_BYTES = 1 << 30
KEEP_MAX_JOURNALS = 4096  # stopped containers kept for `docker logs` (each costs a directory)
MAX_LOG_READERS = 16  # `docker logs` at once (each holds an HTTP thread while it streams)
READ_OUT_BYTES = 256 << 10  # frames sent to the daemon per write
FOLLOW_POLL_S = 0.1  # `docker logs -f`: how often a quiet journal is looked at again

# --- Shipping (driver/stream.py, driver/cloudwatch.py, driver/scheduler.py) -----------------
SHIP_WORKERS = 8  # threads that decode and put, shared by every stream of the host
TURN_BATCHES = 16  # batches one stream ships before others get a turn
# Puts of one stream on the wire at once once its container has stopped: the next starts while
# one awaits its answer, so what is left drains faster than one round trip per batch. Only for
# a batch whose every timestamp is later than those in flight, so GetLogEvents (timestamp
# order) still has the lines in order.
PUTS_IN_FLIGHT = 2
# A failed put with a later one accepted ships that one again (commits are a prefix): after a
# failure a stream puts one batch at a time for this long, so faults cost one batch of
# duplicates per stream, not one per retry.
SERIAL_AFTER_FAILURE_S = 60.0
# A stream with this many journal bytes waiting has a full batch: ship now, not at the interval.
BATCH_TRIGGER_BYTES = MAX_BATCH_BYTES + (64 << 10)
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 20.0
CHECK_TIMEOUT_S = 2.0  # StartLogging's create-group=false check: short, never blocks docker run
# An ExpiredToken answer renews the credentials and retries soon this many times in a row;
# past that it is an auth error (slow retries): the renewed ones expire as soon.
EXPIRED_RETRIES = 3
# Renewals of temporary credentials at most once per this many seconds: every stream that
# meets the expiry asks, one AssumeRole serves them all.
RENEW_MIN_INTERVAL_S = 5.0
STS_FALLBACK_REGION = "us-east-1"  # STS for AWS_ROLE_ARN when no region is set at all
GROUPS_SEEN_MAX = 1024  # groups remembered as existing (create-group=false) or compared (LRU)
# CloudWatch clients kept (LRU), one per region and endpoint the containers name: each holds a
# connection pool and ~1 MB of objects, so an endpoint per container must not keep them all.
MAX_CLIENTS = 32
RETRY_BASE_S = 0.5  # 5xx, connection errors, timeouts: jittered exponential backoff...
RETRY_MAX_S = 30.0  # ...capped, forever
THROTTLE_BASE_S = 0.1  # ThrottlingException: the account is busy; back off, but not for long
THROTTLE_MAX_S = 5.0
SLOW_RETRY_S = 60.0  # credentials refused, group missing with create-group=false
INVALID_SYSTEMATIC = 8  # single events refused with nothing accepted: the batch is not at fault
LOG_EVERY_S = 60.0  # a recurring failure is logged once a minute, not per batch
TASK_ERROR_RETRY_S = 1.0  # a worker task that raised runs again after this
SHUTDOWN_GRACE_S = 2.0  # SIGTERM: puts in flight get this long to finish and commit
# The services whose entries botocore's endpoint table keeps (driver/aws.py): CloudWatch Logs,
# and what credential providers call (assume-role, web identity, SSO).
AWS_ENDPOINT_SERVICES = frozenset({"logs", "sts", "sso", "sso-oidc"})

# --- Driver behaviour --------------------------------------------------------------------------
DEFAULT_FLUSH_INTERVAL_S = 1.0
DEFAULT_MEMBER_WAIT_S = 30.0
MEMBER_FILE_WAIT_S = 2.0  # how long the member file may lag behind StartLogging
MEMBER_MARKER_SCAN_LINES = 100  # the startup line must be among the first lines
MAX_HELD_BYTES = 16 << 20  # journal bytes scanned for the startup line at most
HTTP_THREADS = 8  # no handler waits on CloudWatch, so a few are plenty (plus MAX_LOG_READERS)
THREAD_RESTART_DELAY_S = 0.5  # a worker that raised is restarted after this (no busy loop)

# --- The process's memory (driver/memory.py) -----------------------------------------------------
MALLOC_ARENAS = 2  # glibc arenas for all threads (default: 8 per core, RSS grows with threads)
MALLOC_MMAP_THRESHOLD_BYTES = 4 << 20  # ~1 MiB chunks and bodies come from (and go back to)...
MALLOC_TRIM_THRESHOLD_BYTES = 32 << 20  # ...the arena, which keeps this much free for reuse
GC_THRESHOLDS = (50_000, 20, 20)  # cyclic GC: gen0 every 50,000 allocations (default 700)
MEMORY_GIVE_BACK_EVERY_S = 1.0  # malloc_trim when a stream has shipped all, at most this often
# Decoded events and request bodies that shipping holds at once, all streams together: each
# worker would otherwise hold two batches (one in flight, the next decoded), ~3.5 MiB each at
# 100-byte lines, so 8 workers added ~55 MB in a 50-container fan-in.
SHIP_MEMORY_BYTES = 12 << 20
EVENT_OBJECT_BYTES = 190  # an event in memory besides its message: tuple, ints, bytes header
BODY_EVENT_BYTES = 30  # an event's JSON framing in a request body, besides its message
BATCH_RESERVE_BYTES = 4 << 20  # reserved before decoding a batch, then set to its real size
SHIP_MEMORY_WAIT_S = 0.5  # a stream refused memory runs again after this, or once it is freed

# --- Multi-line events -------------------------------------------------------------------------
# A pending multi-line event waits for its next line at most this many flush-intervals (awslogs:
# 2 x its force-flush interval), then ships as it is.
MULTILINE_MAX_WAIT_INTERVALS = 2

# --- The driver's own log (SELF_LOG_GROUP) -----------------------------------------------------
SELF_LOG_SEND_INTERVAL_S = 5.0  # warnings reach CloudWatch within this (watchtower batches)
SELF_LOG_FLUSH_TIMEOUT_S = 2.0  # at exit, wait at most this for them to go out (SIGTERM: < 5 s)
SELF_LOG_CONNECT_TIMEOUT_S = 3.0
SELF_LOG_READ_TIMEOUT_S = 10.0
SELF_LOG_GROUP_RETRY_MAX_S = 60.0  # creating the group is retried with backoff up to this

# --- Metrics and /health (METRICS_ADDR) --------------------------------------------------------
HEALTH_MAX_LAG_S = 60.0  # /health fails when a stream's oldest unshipped line is older
STREAM_METRICS_KEEP_S = 900.0  # a stream's series stay this long after its last container

# --- The local servers: METRICS_ADDR, the plugin socket, handover.sock ------------------------
# Any local user reaches METRICS_ADDR (loopback TCP). Each connection holds a thread while it
# is served, so at most this many are served at once; one more evicts the oldest that has not
# sent its request yet, or is closed at once. Prometheus scrapes one at a time.
METRICS_MAX_CONNECTIONS = 8
# A connection's whole life (request in, response out) and each socket operation: a local
# scraper needs milliseconds, a client that trickles its request is dropped after this.
METRICS_CLIENT_TIMEOUT_S = 5.0
# How long a connection past the cap waits for the slot of the idle one it evicted.
METRICS_EVICT_WAIT_S = 1.0
# Streams with series of their own; the rest share one group="(other)",stream="(other)" series
# set. A scrape costs ~11 us of Python per series (about 11 a stream) and holds the GIL while it
# renders, time the FIFO reader waits: 10,000 streams took 1.2 s and 11 MB. 256 keep a scrape
# near 30 ms and 0.3 MB, and are more members than a host runs at once (kubelet's default is 110
# pods a node), with room for those stopped in the last STREAM_METRICS_KEEP_S.
METRICS_MAX_STREAMS = 256
# A request body on the plugin socket (waitress reads it before the app sees it; its default is
# 1 GiB). StartLogging's Info carries the container's environment and labels: execve(2) takes at
# most 6 MiB of arguments and environment (2 MiB with the default 8 MiB stack), so a container
# that starts fits, with labels and JSON escaping, in this.
MAX_REQUEST_BODY_BYTES = 8 << 20
# handover.sock: a helper that sends nothing for this long is dropped, so a stuck one does not
# hold the socket (served one connection at a time) from the next; plugin/handover.py's own
# --timeout defaults to the same.
HANDOVER_IDLE_TIMEOUT_S = 60.0
HANDOVER_MAX_MESSAGE_BYTES = 1 << 20  # a request's JSON: 253 names of 64 hex digits need 17 KiB
