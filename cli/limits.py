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
MAX_READ_RATE_ARG = 10_000  # --max-rate above any CloudWatch quota only means no limit
MAX_FETCH_WORKERS = 100  # --workers: each holds a connection and PAGES_AHEAD pages
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
MAX_LOOK_BACK_S = 86_400.0  # a day of event IDs to remember is already a lot of memory
FOLLOW_REDISCOVER_S = 30.0  # look for new legacy streams of the member this often
FILTER_MAX_STREAMS = 100  # FilterLogEvents takes at most 100 logStreamNames

# Legacy layouts: how many first events of an awslogs-style stream are searched for
# SERVICE_MEMBER=<member>, and how many first lines `unresolved` shows.
MARKER_SCAN_EVENTS = 100
UNRESOLVED_FIRST_LINES = 3

# Progress on a TTY: redraw at most this often.
PROGRESS_EVERY_S = 0.5

# `memberlog query` (CloudWatch Logs Insights). StartQuery's limit is at most 100,000 rows
# (10,000 when not given), read 10,000 a GetQueryResults call by nextToken; the query string is
# at most 10,000 characters. CloudWatch ends a query after 60 minutes (status Timeout), so the
# CLI waits that long plus a margin for the last answer, then stops it.
QUERY_MAX_ROWS = 100_000
QUERY_DEFAULT_ROWS = 10_000
QUERY_PAGE_ROWS = 10_000
QUERY_MAX_CHARS = 10_000
QUERY_DEFAULT_SINCE = "1h"  # recent enough to be cheap (Logs Insights is billed per GB scanned)
QUERY_TIMEOUT_S = 60 * 60 + 60
# GetQueryResults polls: most queries end within seconds, long ones need no answer twice a second.
QUERY_POLL_FIRST_S = 0.5
QUERY_POLL_MAX_S = 5.0
QUERY_POLL_GROWTH = 1.5
# StartQuery answers LimitExceededException while the account runs its maximum of concurrent
# queries (100): other queries end within minutes, so wait that long, backing off, then give up.
QUERY_START_WAIT_S = 300.0
QUERY_START_BACKOFF_FIRST_S = 1.0
QUERY_START_BACKOFF_MAX_S = 20.0

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
