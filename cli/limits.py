"""Every limit and tuning knob of the query CLI, in one place, with the reason for its value."""

from __future__ import annotations

# GetLogEvents / FilterLogEvents return at most 10,000 events or 1 MB (messages + 26 bytes
# each) a page; a first page near either limit means the range is long enough for windows.
PAGE_EVENTS = 10_000
EVENT_OVERHEAD_BYTES = 26
FULL_PAGE_BYTES = 900_000

# Parallel windowed fetch. GetLogEvents is allowed 25 requests/s per account and Region by
# default (10 in some Regions, 30 in one), shared by every reader of the account: a client-side
# rate limit shared by all workers starts at the common quota and backs off on throttling
# (AIMD), so it settles under whatever the Region and the neighbours leave.
FETCH_WORKERS = 10
MAX_READ_RATE = 25  # request starts in any one second, all read calls of this process, at most
MIN_READ_RATE = 1
THROTTLED_RATE_FACTOR = 0.7  # each ThrottlingException takes the allowance down by 30%
RATE_RECOVERY_PER_S = 1.0  # each second without one gives back one request/s
PAGES_AHEAD = 2  # pages a worker may hold for a window the printer has not reached yet
# A range shorter than this is read sequentially: windows would cost more calls than they save.
MIN_WINDOW_MS = 1_000

# Retries of read calls (ThrottlingException, 5xx, connection errors), on top of none in botocore.
READ_ATTEMPTS = 12
BACKOFF_BASE_S = 0.2
BACKOFF_MAX_S = 5.0

# Follow: FilterLogEvents over a look-back window every poll, de-duplicated by eventId.
FOLLOW_POLL_S = 1.0
FOLLOW_LOOKBACK_S = 120.0
FOLLOW_REDISCOVER_S = 30.0  # look for new legacy streams of the member this often
FILTER_MAX_STREAMS = 100  # FilterLogEvents takes at most 100 logStreamNames

# Legacy layouts: how many first events of an awslogs-style stream are searched for
# SERVICE_MEMBER=<member>, and how many first lines `unresolved` shows.
MARKER_SCAN_EVENTS = 100
UNRESOLVED_FIRST_LINES = 3

# Progress on a TTY: redraw at most this often.
PROGRESS_EVERY_S = 0.5

# Follow --live: StartLiveTail pushes what was ingested about once a second. One session takes
# at most 100 logStreamNames of one group; a member with more streams is polled instead (a
# session per 100 would multiply the bill, billed per session-minute, and need a thread each).
LIVE_MAX_STREAMS = 100
# Sessions end after 3 h (SessionTimeoutException) or when the connection drops; the next one
# starts no sooner than this after the last ended, so an endpoint whose sessions end at once
# (moto's: one update, then the end) is asked at most once a second, like a poll.
LIVE_RECONNECT_MIN_S = 1.0
# Attempts of the first StartLiveTail: a network error there usually means no route to the
# stream-logs host (a VPC without its endpoint), and polling serves at once instead of after
# READ_ATTEMPTS' minute of backoff. Later reconnects use READ_ATTEMPTS, as every read does.
LIVE_START_ATTEMPTS = 2
# The notice naming why live tail is not available quotes the endpoint's error on one line, cut
# to this many characters: an endpoint without the operation may answer with a whole HTML page.
LIVE_REASON_CHARS = 300
