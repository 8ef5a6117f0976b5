"""Every limit, default and environment variable name, in one place."""

from __future__ import annotations

# Parallelism (README, flags of lld-all and issue-all).
DEFAULT_PARALLEL = 3  # `--parallel` given without a value
MAX_PARALLEL = 10  # larger values are capped, with a warning

# Workflow (docs/user-guide.md, Models and settings; Stop and resume).
DEFAULT_MAX_ITERATIONS = 3  # revisions after the first draft
MAX_STATE_ITERATION = 10_000  # a checkpoint claiming more iterations is not one of ours
DEFAULT_TIMEOUT = 1800.0  # seconds per workflow before its group is ended
DEFAULT_GRACE = 5.0  # seconds between SIGTERM and SIGKILL on stop
WAITS_MAX = 50  # key waits one attempt's result keeps for the report (the rest are only summed)
MAX_TIMEOUT = 604800.0  # --timeout above 7 days is refused (a typo, or a hostile pyproject)
MAX_GRACE = 3600.0  # --grace above an hour is refused
MAX_BUDGET = 1_000_000.0  # USD: a --budget above this is a typo
DEFAULT_MODEL = "offline:default"

# Model replies (docs/user-guide.md, Models and settings).
MAX_CONTINUATIONS = 2  # a reply cut at the output-token limit is continued this often at most
QUOTE_LIMIT = 200  # characters of an unreadable review quoted in the findings and the reason
REASON_LIMIT = 500  # characters of the reviewer's words in a halt reason (DISCUSS)
RETRY_NAME_LIMIT = 40  # characters of a provider's retry label kept as a retries key
RETRY_COUNT_MAX = 1_000_000  # a stored retry count above this is not one of ours

# Files shared between processes.
LOCK_TIMEOUT = 30.0  # seconds to wait for a shared-file lock (status index)
RECORD_LIMIT = 64 << 20  # bytes of a run's summary or journal that `status` reads at most
SQLITE_TIMEOUT = 10.0  # seconds SQLite waits on a busy checkpoint

# Ids (README, The workspace): checked before an id is used in any path.
ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"

# Exit codes (README, Exit codes).
EXIT_OK = 0
EXIT_NOT_DONE = 1
EXIT_USAGE = 2
EXIT_NO_CREDENTIAL = 75
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

# Environment variables.
ENV_WORKFLOW_DB = "ASSEMBLYZERO_WORKFLOW_DB"
ENV_STATE_DIR = "ASSEMBLYZERO_STATE_DIR"
ENV_CREDENTIALS = "ASSEMBLYZERO_CREDENTIALS"
ENV_OFFLINE_APPROVE_AT = "ASSEMBLYZERO_OFFLINE_APPROVE_AT"
ENV_OFFLINE_LATENCY = "ASSEMBLYZERO_OFFLINE_LATENCY"
ENV_SIMULATE_FAIL = "ASSEMBLYZERO_SIMULATE_FAIL"
ENV_SIMULATE_HANG = "ASSEMBLYZERO_SIMULATE_HANG"
ENV_SIMULATE_429 = "ASSEMBLYZERO_SIMULATE_429"
ENV_SIMULATE_401 = "ASSEMBLYZERO_SIMULATE_401"
ENV_RUN_DIR = "ASSEMBLYZERO_RUN_DIR"  # set by the coordinator for each worker
ENV_DRAFTER = "ASSEMBLYZERO_DRAFTER"  # the models (a flag's setting, and the worker's input:
ENV_REVIEWER = "ASSEMBLYZERO_REVIEWER"  # a spec may carry a key, so never the worker's argv)
ENV_LIFELINE_FD = "ASSEMBLYZERO_LIFELINE_FD"  # end-of-file there: the coordinator is gone
DEFAULT_OFFLINE_APPROVE_AT = 2

# Output.
PROGRESS_EVERY = 10.0  # seconds between the coordinator's one-line progress reports
LIVE_REFRESH = 0.25  # seconds between redraws of the live area (elapsed times, ETA)
LIVE_KEYS_EVERY = 2.0  # seconds between updates of the live area's key budgets (pacing)
SPEND_EVERY = 1.0  # seconds between the coordinator's reads of its workers' spend (a budget)
LOOP_WAIT_MAX = 3600.0  # the coordinator's longest single wait (its deadlines may be far off)
GROUP_POLL = 0.02  # seconds between looks at a worker group that outlived its tee
KILL_WAIT = 5.0  # seconds a group may take to vanish after SIGKILL
ABANDON_WAIT = 5.0  # after a coordinator error: seconds to wait for killed workers' last lines

# Demo (invoke demo): per-call latency so that the parallelism is visible.
DEMO_LATENCY = 0.25

# Credential leases (docs/user-guide.md, Credentials and leases).
ENV_CREDENTIAL = "ASSEMBLYZERO_CREDENTIAL"  # names of the worker's leased credentials
ENV_SECRET_FD = "ASSEMBLYZERO_SECRET_FD"  # pipe the worker reads its secrets from
ENV_LINK_FD = "ASSEMBLYZERO_LINK_FD"  # on a cluster: the socket to the worker's Dask task
ENV_CLUSTER = "ASSEMBLYZERO_CLUSTER"  # the cluster to run on (--cluster)
DEFAULT_STATE_DIR = "~/.assemblyzero/state"
LEASE_TTL = 120.0  # a holder on another host whose heartbeat is older is stale
LEASE_HEARTBEAT = 30.0  # seconds between heartbeats of held leases
LEASE_RECHECK = 1.0  # pool exhausted by other runs: look again this often
LEASE_LOCK_POLL = 0.0005  # seconds between tries of a contended lease-file lock
BACKOFF_START = 2.0  # 429 without Retry-After: 2 s, 4 s, 8 s ... (seconds)
BACKOFF_CAP = 60.0
BACKOFF_MAX_EXPONENT = 6  # 2 s * 2**6 = 128 s, past the cap: a longer streak changes nothing
BACKOFF_JITTER = 0.2  # plus 0-20 %
# A lease file is shared state anyone may have written: numbers outside these are corrupt.
COOLDOWN_MAX = 86400.0  # a cooldown (Retry-After included) ends within a day
LEASE_STREAK_MAX = 1000  # consecutive 429s counted at most
LEASE_GENERATION_MAX = 2**53  # leases counted at most (exact in any JSON reader)
DEFAULT_MAX_ATTEMPTS = 5
EXIT_RATE_LIMITED = 75  # worker: the model said 429; retry on another key
EXIT_AUTH_FAILED = 77  # worker: the model said 401/403; the key is disabled
# Kept out of every worker's environment, with each credential's key_env.
SECRET_ENV_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")

# Output-token caps a provider asks for when the request sets none (--max-output-tokens).
# Anthropic requires a cap: 16384 fits Claude 3.7 and every Claude 4 model (Sonnet 4.5
# allows 64000, Opus 4 32000); the older models allow less and get their own (published
# limits: claude-3-5-* 8192, the other claude-3-* 4096); an LLD is a few thousand tokens.
# OpenAI (its own API or a compatible server) and Gemini get no cap unless one is set: the
# model's own limit applies, and models differ widely (gpt-4-turbo 4096, gpt-4o 16384; a
# local server's context may be smaller than any fixed default, and a value above a model's
# limit is refused).
ANTHROPIC_MAX_OUTPUT_TOKENS = 16_384
ANTHROPIC_OLDER_MAX_OUTPUT_TOKENS = {"claude-3-5-": 8192, "claude-3-haiku": 4096,
                                     "claude-3-opus": 4096, "claude-3-sonnet": 4096}
# --max-output-tokens: a cap on one model reply (default: each provider's own).
MAX_OUTPUT_TOKENS = 1_000_000  # above any model's output limit: a larger value is a typo
MAX_OUTPUT_EXAMPLE = 16384  # the value messages suggest
