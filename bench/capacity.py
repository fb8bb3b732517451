"""(7) Capacity: jobrelay at 10k, 100k and 1M requests a day against AWS's default quotas.

A pure simulation in virtual time (seconds to run, no local stack): a day of requests with
bursty arrivals (a third of them within one hour, the rest spread over the other 23), each
request a job of the bench's mix (`bench.simulation.job_mix`) followed by the default poll
policy, so its polls fall where `jobrelay.polling` would put them. Every second of the day
counts what jobrelay asks of AWS: SQS messages, CreateJob invocations (the event source's
batches, at most `CreateJobMaxConcurrency` at once; what it cannot take waits in the queue),
`StartExecution` calls, state transitions, each function's concurrent executions (Little's
law: invocations a second times the invocation's duration), provider calls per provider,
DynamoDB write units, SNS publishes and Secrets Manager reads. The day is periodic: jobs that
run past midnight load the next day's first hours, as they would in a steady state.

Each peak is set beside AWS's default quotas for a large region (us-east-1) and a small one
(any region outside us-east-1, us-west-2 and eu-west-1, where Step Functions' defaults are
lower). Token-bucket quotas (StartExecution, state transitions) are run as buckets over the
day's seconds: work over the bucket waits (it is retried) and the model says how long.

The calls per request are counted from the code (`creation.py`, `aws.py`, `polling.py`,
`outcome.py`, `wiring.py`): the constants below say which call each is; update them when the
code changes (CreateJob is being brought to 3 AWS calls a record). Durations come from the
last recorded bench run (`bench/results.json`: CreateJob batches at 200 ms provider latency,
the poll task's own time) when it has them, else from the constants.
"""

from __future__ import annotations

import json
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from jobrelay.poll_policy import PollPolicy

from bench.simulation import HINTED_SHARE, Job, adaptive, job_mix, poll_ages

RESULTS = Path(__file__).resolve().parent / "results.json"

# ------------------------------------------------------------------ the load
DAY = 86_400
REQUESTS_PER_DAY = (10_000, 100_000, 1_000_000)
BURST_SHARE = 1 / 3  # of a day's requests, within one hour
BURST_START = 12 * 3600  # the burst hour's start (any hour: the day is periodic)
SEED = 20261123
TEMPLATES = 3000  # jobs of the mix followed once; each request is one of them, at random
PROVIDER_OF_HINTS = {"estimate": "pixxel", "progress": "deepset", "none": "matatika"}

# ------------------------------------------------------------------ work per request
# CreateJob, per record, happy path (a request without connection limits). The lead is
# bringing CreateJob to <= 3 AWS calls a record: the job ledger's UpdateItem (lease and
# attempt), one TransactWriteItems (the job's claim and the ledger's record of it) and
# StartExecution. Before issue 13 it was 6: Powertools' idempotency record in and out, the
# ledger attempt, the claim, the ledger record, StartExecution.
CREATE_JOB_AWS_CALLS_PER_RECORD = 3
# DynamoDB write units a record costs: 1 for the UpdateItem, 2 items x 2 for the
# transaction (a transactional write is two units per item). The 6-call path cost 5 too
# (five single-item writes).
CREATE_JOB_DYNAMODB_WRITE_UNITS_PER_RECORD = 5
CREATE_JOB_STARTS_PER_RECORD = 1  # StartExecution (its name makes it idempotent)
CREATE_JOB_PROVIDER_CALLS_PER_RECORD = 1  # the create (reconciliation adds a listing)
# PollJobStatus, per round: one provider GET, no AWS call but its cached secret.
POLL_PROVIDER_CALLS_PER_ROUND = 1
POLL_DYNAMODB_WRITE_UNITS_PER_ROUND = 0
# PublishOutcome, per outcome: Powertools idempotency (PutItem in progress, UpdateItem
# completed), the ledger's note of the outcome (UpdateItem), one SNS Publish.
PUBLISH_DYNAMODB_WRITE_UNITS_PER_OUTCOME = 3
PUBLISH_SNS_PER_OUTCOME = 1
# A connection with limits adds the slots item's writes (take and release, both on one item:
# one partition key, so at most 1,000 write units a second per connection).
LIMITED_CONNECTION_WRITE_UNITS_PER_REQUEST = 2
# State transitions: the first WaitBeforePoll, then 3 a round (PollJobStatus, IsJobDone and
# the next Wait, or PublishOutcome after the last): counted from real executions in the
# bench's tracking section, read from results.json when it has them.
TRANSITIONS_PER_ROUND = 3.0
TRANSITIONS_PER_EXECUTION = 1.0
# Secrets: each execution environment reads its provider's key once per SECRET_MAX_AGE
# (SecretMaxAgeSeconds, 300 s) and on its first event.
SECRET_MAX_AGE_SECONDS = 300
SECRETS_PER_ENVIRONMENT = 1
# Share of requests whose tracker is stopped (a cancel, an operator) and so end through
# TrackerEnded: an assumption.
TRACKER_ENDED_SHARE = 0.01

# ------------------------------------------------------------------ durations (seconds)
PROVIDER_LATENCY_SECONDS = 0.2  # the bench's provider latency
CREATE_JOB_SINGLE_SECONDS = 0.27  # a batch of 1 (results.json: createjob, slowest single)
CREATE_JOB_BATCH10_SECONDS = 0.57  # a batch of 10 (results.json: createjob)
POLL_OWN_SECONDS = 0.05  # PollJobStatus less its provider GET (results.json: tracking)
PUBLISH_OUTCOME_SECONDS = 0.1  # 3 DynamoDB calls and one SNS Publish: an assumption
TRACKER_ENDED_SECONDS = 0.5  # a GET, a stop, the publish: an assumption

# ------------------------------------------------------------------ the template's settings
FIRST_POLL_SECONDS = 10  # FirstPollSeconds
CREATE_JOB_BATCH_SIZE = 10  # CreateJobBatchSize
CREATE_JOB_MAX_CONCURRENCY = 20  # CreateJobMaxConcurrency (the event source's maximum)
VISIBILITY_TIMEOUT_SECONDS = 390  # JobRequestsQueue
MAX_RECEIVE_COUNT = 5  # MaxReceiveCount: receives before the DLQ
MESSAGE_RETENTION_SECONDS = 4 * DAY  # JobRequestsQueue
# A creation rate the model holds the million to (a what-if, not a default): 400 creates a
# minute on each of three connections.
HELD_CREATE_RATE = 3 * 400 / 60

# ------------------------------------------------------------------ AWS's default quotas
# Each as read on the page beside it (and where it was read, if not that page itself).
SFN_QUOTAS_URL = "https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html"
SFN_QUOTAS_SOURCE = (
    "github.com/awsdocs/aws-step-functions-developer-guide doc_source/limits-overview.md"
)
LAMBDA_CONCURRENCY_URL = "https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html"
LAMBDA_SCALING_URL = "https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html"
SQS_QUOTAS_URL = (
    "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-queues.html"
)
SNS_QUOTAS_URL = "https://docs.aws.amazon.com/general/latest/gr/sns.html"
DYNAMODB_QUOTAS_URL = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html"
)
DYNAMODB_ON_DEMAND_URL = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/on-demand-capacity-mode.html"
)
SECRETS_QUOTAS_URL = (
    "https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html"
)
SECRETS_RAISED_URL = "https://aws.amazon.com/about-aws/whats-new/2025/03/aws-secrets-manager-increases-api-requests-seconds/"

LARGE, SMALL = "us-east-1", "small region"
REGIONS = {
    LARGE: "US East (N. Virginia)",
    SMALL: "any region but us-east-1, us-west-2, eu-west-1 (e.g. af-south-1)",
}


@dataclass(frozen=True)
class Quota:
    what: str
    unit: str
    url: str
    large: float
    small: float
    bucket_large: float | None = None  # token buckets: the burst a bucket holds
    bucket_small: float | None = None
    note: str = ""

    def limit(self, region: str) -> float:
        return self.large if region == LARGE else self.small

    def bucket(self, region: str) -> float | None:
        return self.bucket_large if region == LARGE else self.bucket_small


QUOTAS: dict[str, Quota] = {
    # Step Functions Standard, per account and region (soft quotas). Read from the source of
    # SFN_QUOTAS_URL (SFN_QUOTAS_SOURCE); AWS notes new accounts get lower state-transition
    # quotas, raised with use.
    "start_execution": Quota(
        "Step Functions StartExecution (Standard)",
        "calls/s refill",
        SFN_QUOTAS_URL,
        large=300,
        small=150,
        bucket_large=1300,
        bucket_small=800,
    ),
    "state_transitions": Quota(
        "Step Functions state transitions (Standard)",
        "transitions/s refill",
        SFN_QUOTAS_URL,
        large=1500,
        small=500,
        bucket_large=5000,
        bucket_small=800,
        note="new accounts start lower",
    ),
    "open_executions": Quota(
        "Step Functions open executions", "executions", SFN_QUOTAS_URL, 1_000_000, 1_000_000
    ),
    # Lambda, per account and region: concurrent executions (new accounts may start lower),
    # and each function's scaling rate, 1,000 environments every 10 s.
    "lambda_concurrency": Quota(
        "Lambda concurrent executions (account)",
        "executions",
        LAMBDA_CONCURRENCY_URL,
        1000,
        1000,
        note="shared by every function of the account",
    ),
    "lambda_scaling": Quota(
        "Lambda scaling rate (per function)",
        "environments per 10 s",
        LAMBDA_SCALING_URL,
        1000,
        1000,
    ),
    # SQS standard queue: backlog unlimited, ~120,000 in flight (received, not deleted).
    "sqs_in_flight": Quota(
        "SQS messages in flight (standard queue)", "messages", SQS_QUOTAS_URL, 120_000, 120_000
    ),
    # SNS Publish (standard topics), per account and region. 30,000/s in us-east-1; the
    # per-region table ranges down to 300/s in the smallest regions (that figure read in a
    # secondary summary of SNS_QUOTAS_URL, not in the table itself: check your region's row).
    "sns_publish": Quota(
        "SNS Publish (standard topics)", "messages/s", SNS_QUOTAS_URL, 30_000, 300
    ),
    # DynamoDB on-demand: 40,000 write request units a second per table (adjustable); a new
    # on-demand table serves up to 4,000 writes a second at once and doubles past peaks.
    "dynamodb_table_writes": Quota(
        "DynamoDB on-demand write units per table", "WRU/s", DYNAMODB_QUOTAS_URL, 40_000, 40_000
    ),
    "dynamodb_new_table_writes": Quota(
        "DynamoDB new on-demand table, writes at once",
        "writes/s",
        DYNAMODB_ON_DEMAND_URL,
        4000,
        4000,
        note="grows with the table's past peaks",
    ),
    # Secrets Manager GetSecretValue: 10,000 a second per account and region since 2025-03.
    "secrets_get": Quota(
        "Secrets Manager GetSecretValue", "calls/s", SECRETS_QUOTAS_URL, 10_000, 10_000
    ),
}


# ------------------------------------------------------------------ the model
@dataclass(frozen=True)
class Durations:
    create_single: float = CREATE_JOB_SINGLE_SECONDS
    create_batch10: float = CREATE_JOB_BATCH10_SECONDS
    poll: float = PROVIDER_LATENCY_SECONDS + POLL_OWN_SECONDS
    publish: float = PUBLISH_OUTCOME_SECONDS
    tracker_ended: float = TRACKER_ENDED_SECONDS
    source: str = "constants"

    def create(self, records: float) -> float:
        """One CreateJob invocation of `records` records (linear between 1 and 10)."""
        per_record = (self.create_batch10 - self.create_single) / 9
        return self.create_single + per_record * max(0.0, records - 1)


@dataclass(frozen=True)
class Settings:
    batch_size: int = CREATE_JOB_BATCH_SIZE
    max_concurrency: int = CREATE_JOB_MAX_CONCURRENCY
    first_poll_seconds: float = FIRST_POLL_SECONDS
    transitions_per_round: float = TRANSITIONS_PER_ROUND
    transitions_per_execution: float = TRANSITIONS_PER_EXECUTION
    # Connection limits' creation rate summed over the connections (`max_creates_per_minute`
    # / 60 each), None without: a request over it waits for its turn.
    max_creates_per_second: float | None = None

    def create_rate(self, durations: Durations) -> float:
        """Records a second CreateJob takes at most: full batches, every slot busy (and no
        more than the connections' creation rate)."""
        ceiling = self.max_concurrency * self.batch_size / durations.create(self.batch_size)
        if self.max_creates_per_second is not None:
            return min(ceiling, self.max_creates_per_second)
        return ceiling


@dataclass(frozen=True)
class Template:
    provider: str
    polls: tuple[int, ...]  # seconds after the tracker's start
    end: int  # the last poll: the outcome's second


@dataclass
class Profile:
    """The mix followed once by the policy; each request of the day is one of these."""

    templates: list[Template]
    max_poll_seconds: int
    round_seconds: float
    polls_per_job: float = field(init=False)

    def __post_init__(self) -> None:
        self.polls_per_job = sum(len(t.polls) for t in self.templates) / len(self.templates)


def profile(
    *,
    policy: PollPolicy | None = None,
    count: int = TEMPLATES,
    first_poll_seconds: float = FIRST_POLL_SECONDS,
    round_seconds: float = PROVIDER_LATENCY_SECONDS + POLL_OWN_SECONDS,
    seed: int = SEED,
) -> Profile:
    policy = policy or PollPolicy()
    rng = random.Random(seed)
    waits = adaptive(policy, rng)
    templates = []
    for job in job_mix(count, seed=seed, hinted_share=HINTED_SHARE):
        ages = poll_ages(job, waits, first_poll=first_poll_seconds, round_seconds=round_seconds)
        seconds = tuple(int(age) for age in ages)
        templates.append(Template(_provider(job), seconds, seconds[-1]))
    return Profile(templates, policy.max_poll_seconds, round_seconds)


def _provider(job: Job) -> str:
    return PROVIDER_OF_HINTS[job.hints]


def arrivals(requests_per_day: int, *, seed: int = SEED) -> list[int]:
    """Requests sent each second of the day: a third within the burst hour, the rest spread
    uniformly over the other 23 hours."""
    rng = random.Random(seed)
    counts = [0] * DAY
    burst = round(requests_per_day * BURST_SHARE)
    for _ in range(burst):
        counts[BURST_START + int(rng.random() * 3600)] += 1
    for _ in range(requests_per_day - burst):
        second = int(rng.random() * (DAY - 3600))
        counts[second + 3600 if second >= BURST_START else second] += 1
    return counts


@dataclass
class Day:
    """What one day asks of AWS, second by second (periodic: index modulo DAY)."""

    requests: int
    sent: list[int]
    created: list[int]  # records CreateJob handled: StartExecution calls
    backlog: list[int]  # messages waiting in the queue at the end of each second
    create_invocations: list[int]
    create_concurrency: list[float]
    polls: dict[str, list[int]]  # PollJobStatus rounds (provider GETs) per provider
    creates: dict[str, list[int]]  # provider creates per provider
    outcomes: list[int]
    open_executions: list[int]
    queue_wait_max_seconds: float


def simulate(
    requests_per_day: int,
    prof: Profile,
    *,
    settings: Settings | None = None,
    durations: Durations | None = None,
    seed: int = SEED,
) -> Day:
    settings = settings or Settings()
    durations = durations or Durations()
    sent = arrivals(requests_per_day, seed=seed)
    # The queue and CreateJob: each second the event source takes what is waiting, up to
    # what max_concurrency invocations of full batches can take; the rest waits (FIFO
    # here, close enough for a standard queue's order at these scales).
    rate = settings.create_rate(durations)
    capacity = math.floor(rate)
    carry = rate - capacity
    longest = max(t.end for t in prof.templates) + 2
    horizon = DAY + longest + 2 * DAY  # what the queue may carry past the day, then drains
    created = [0] * horizon
    backlog_at = [0] * DAY
    waiting: list[list[int]] = []  # [arrival second, count], oldest first
    waiting_total = 0
    wait_max = 0.0
    credit = 0.0
    second = 0
    while second < DAY or waiting_total:
        if second < DAY and sent[second]:
            waiting.append([second, sent[second]])
            waiting_total += sent[second]
        credit += carry
        take = capacity + int(credit)
        credit -= int(credit)
        while take and waiting:
            oldest = waiting[0]
            served = min(take, oldest[1])
            wait_max = max(wait_max, float(second - oldest[0]))
            oldest[1] -= served
            take -= served
            waiting_total -= served
            created[second] += served
            if not oldest[1]:
                waiting.pop(0)
        backlog_at[second % DAY] = max(backlog_at[second % DAY], waiting_total)
        second += 1
        if second >= horizon - longest:
            raise RuntimeError("the queue never drained: CreateJob cannot keep up at all")
    horizon = second + longest
    del created[horizon:]
    invocations = [0] * horizon
    concurrency = [0.0] * horizon
    for t, n in enumerate(created):
        if n:
            batches = math.ceil(n / settings.batch_size)
            invocations[t] = batches
            concurrency[t] = batches * durations.create(n / batches)
    # Every created request's tracker: its polls and its outcome, in its template's time.
    rng = random.Random(seed + 1)
    polls = {name: [0] * horizon for name in PROVIDER_OF_HINTS.values()}
    creates = {name: [0] * horizon for name in PROVIDER_OF_HINTS.values()}
    outcomes = [0] * horizon
    opened = [0] * (horizon + 1)
    # Each template with its rows looked up once: the loop below is the model's whole cost.
    chosen = rng.choices(
        [(polls[t.provider], creates[t.provider], t.polls, t.end) for t in prof.templates],
        k=sum(created),
    )
    index = 0
    for start, n in enumerate(created):
        if not n:
            continue
        opened[start] += n
        for row, made, offsets, end in chosen[index : index + n]:
            made[start] += 1
            for offset in offsets:
                row[start + offset] += 1
            outcomes[start + end] += 1
            opened[start + end + 1] -= 1
        index += n
    running, open_executions = 0, [0] * horizon
    for t in range(horizon):
        running += opened[t]
        open_executions[t] = running
    return Day(
        requests=requests_per_day,
        sent=sent,
        created=_fold(created),
        backlog=backlog_at,
        create_invocations=_fold(invocations),
        create_concurrency=_fold(concurrency),
        polls={name: _fold(row) for name, row in polls.items()},
        creates={name: _fold(row) for name, row in creates.items()},
        outcomes=_fold(outcomes),
        # The open executions of a steady state: today's and those still open from before.
        open_executions=_fold(open_executions),
        queue_wait_max_seconds=wait_max,
    )


def _fold(series: Sequence[float]) -> list[Any]:
    """A series past the day's end laid over its start (the next day is the same day)."""
    folded: list[Any] = list(series[:DAY])
    for t in range(DAY, len(series)):
        if series[t]:
            folded[t % DAY] += series[t]
    return folded


def _add(*series: Sequence[float]) -> list[float]:
    return [sum(values) for values in zip(*series, strict=True)]


def _scaled(series: Sequence[float], factor: float) -> list[float]:
    return [value * factor for value in series]


def bucket(series: Sequence[float], *, size: float, refill: float) -> dict[str, float]:
    """Run a token bucket over the day (twice, so the day starts from its own end): work over
    it waits for tokens (it is retried). Answers how much waited at most at once, about how
    long (what waited over the refill rate), and the work-seconds spent waiting."""
    tokens, waiting = size, 0.0
    most, waited = 0.0, 0.0
    for lap in range(2):
        for demand in series:
            tokens += refill
            if tokens > size:
                tokens = size
            asked = demand + waiting
            if asked <= tokens:
                tokens -= asked
                waiting = 0.0
            else:
                waiting = asked - tokens
                tokens = 0.0
                if lap:
                    waited += waiting
                    if waiting > most:
                        most = waiting
    return {
        "throttled": most > 0,
        "most_waiting": most,
        "longest_wait_seconds": most / refill,
        "waiting_seconds_total": waited,
    }


def figures(day: Day, prof: Profile, settings: Settings, durations: Durations) -> dict[str, Any]:
    """The day's peaks per second and means, each beside its quotas in both regions."""
    polls = _add(*day.polls.values())
    transitions = _add(
        _scaled(day.created, settings.transitions_per_execution),
        _scaled(polls, settings.transitions_per_round),
    )
    publish = day.outcomes
    lambdas = {
        "CreateJob": day.create_concurrency,
        "PollJobStatus": _scaled(polls, durations.poll),
        "PublishOutcome": _scaled(publish, durations.publish),
        "TrackerEnded": _scaled(publish, TRACKER_ENDED_SHARE * durations.tracker_ended),
    }
    concurrency = _add(*lambdas.values())
    writes = _add(
        _scaled(day.created, CREATE_JOB_DYNAMODB_WRITE_UNITS_PER_RECORD),
        _scaled(polls, POLL_DYNAMODB_WRITE_UNITS_PER_ROUND),
        _scaled(publish, PUBLISH_DYNAMODB_WRITE_UNITS_PER_OUTCOME),
    )
    secrets = _secret_reads(concurrency)
    provider_calls = {
        name: _add(
            _scaled(day.creates[name], CREATE_JOB_PROVIDER_CALLS_PER_RECORD),
            _scaled(day.polls[name], POLL_PROVIDER_CALLS_PER_ROUND),
        )
        for name in day.polls
    }
    measures: dict[str, dict[str, Any]] = {
        "requests_sent": _measure(day.sent, "messages/s"),
        "queue_backlog": _measure(day.backlog, "messages", rate=False),
        "create_job_invocations": _measure(day.create_invocations, "invocations/s"),
        "start_execution": _measure(
            _scaled(day.created, CREATE_JOB_STARTS_PER_RECORD), "calls/s", "start_execution"
        ),
        "state_transitions": _measure(transitions, "transitions/s", "state_transitions"),
        "open_executions": _measure(
            day.open_executions, "executions", "open_executions", rate=False
        ),
        "poll_rounds": _measure(polls, "rounds/s"),
        "lambda_concurrency": _measure(concurrency, "executions", "lambda_concurrency", rate=False),
        "dynamodb_writes": _measure(writes, "WRU/s", "dynamodb_table_writes"),
        "sns_publish": _measure(
            _scaled(publish, PUBLISH_SNS_PER_OUTCOME), "messages/s", "sns_publish"
        ),
        "secrets_get": _measure(secrets, "calls/s", "secrets_get"),
    }
    measures["dynamodb_writes"]["quotas"]["new_table"] = _against(
        measures["dynamodb_writes"]["peak"], QUOTAS["dynamodb_new_table_writes"]
    )
    for name, series in lambdas.items():
        measures[f"concurrency_{name}"] = _measure(series, "executions", rate=False)
        measures[f"concurrency_{name}"]["scale_up_per_10s"] = _scale_up(series)
    for name, series in provider_calls.items():
        measures[f"provider_{name}"] = _measure(series, "calls/s")
    _buckets(measures, day, transitions)
    measures["lambda_concurrency"]["scaling"] = {
        name: _against(
            measures[f"concurrency_{name}"]["scale_up_per_10s"], QUOTAS["lambda_scaling"]
        )
        for name in lambdas
    }
    return {
        "requests_per_day": day.requests,
        "requests_in_burst_hour": round(day.requests * BURST_SHARE),
        "create_rate_ceiling_per_second": settings.create_rate(durations),
        "queue_wait_max_seconds": day.queue_wait_max_seconds,
        "settings": asdict(settings),
        "measures": measures,
        "first_throttled": first_throttled(measures),
    }


def _secret_reads(concurrency: Sequence[float]) -> list[float]:
    """Each warm environment reads its secret every SECRET_MAX_AGE_SECONDS, and a new one on
    its first event: an upper bound from the total concurrency and how fast it grows."""
    reads, before = [], concurrency[-1]
    for now in concurrency:
        grown = max(0.0, now - before)
        reads.append(SECRETS_PER_ENVIRONMENT * (now / SECRET_MAX_AGE_SECONDS + grown))
        before = now
    return reads


def _scale_up(series: Sequence[float], window: int = 10) -> float:
    """The most a function's concurrency grows within 10 seconds (the scaling rate's window):
    each second against the lowest of the 10 before it (a sliding minimum)."""
    most, lows = 0.0, deque[int]()
    for t, value in enumerate(series):
        while lows and series[lows[-1]] >= value:
            lows.pop()
        lows.append(t)
        if lows[0] < t - window:
            lows.popleft()
        grown = value - series[lows[0]]
        if grown > most:
            most = grown
    return most


def _measure(
    series: Sequence[float], unit: str, quota: str | None = None, *, rate: bool = True
) -> dict[str, Any]:
    peak = max(series)
    burst = series[BURST_START : BURST_START + 3600]
    found: dict[str, Any] = {
        "unit": unit,
        "peak": peak,
        "peak_second": series.index(peak),
        "mean": sum(series) / len(series),
        "burst_hour_mean": sum(burst) / len(burst),
        "quotas": {},
    }
    if rate:
        found["total"] = sum(series)
    if quota is not None:
        found["quotas"] = {region: _against(peak, QUOTAS[quota], region) for region in REGIONS}
        found["quota"] = quota
    return found


def _against(peak: float, quota: Quota, region: str = LARGE) -> dict[str, Any]:
    limit = quota.limit(region)
    return {
        "limit": limit,
        "unit": quota.unit,
        "peak_to_limit": peak / limit,
        # Everything jobrelay asks grows with the requests: how much more the day could
        # carry before this quota is reached (a token bucket's is found by running it).
        "growth_before_limit": limit / peak if peak else math.inf,
        "url": quota.url,
    }


def _from_quietest(series: Sequence[float]) -> list[float]:
    """The periodic day from its quietest second on: a bucket run from full there is in the
    state the day leaves it in (it has refilled), so one lap tells what two would."""
    start = min(range(len(series)), key=series.__getitem__)
    return [*series[start:], *series[:start]]


def _empties(series: Sequence[float], factor: float, *, size: float, refill: float) -> bool:
    """Whether `factor` times the day's demand (from its quietest second) ever asks the
    bucket for more tokens than it has."""
    tokens = size
    for demand in series:
        tokens += refill
        if tokens > size:
            tokens = size
        tokens -= factor * demand
        if tokens < 0.0:
            return True
    return False


def growth_before_throttle(series: Sequence[float], *, size: float, refill: float) -> float:
    """The factor the day's load can grow by before the bucket first makes work wait
    (within 1%). Never below refill / peak (no second asks more than a refill), never above
    (size + refill) / peak (that second alone would empty a full bucket)."""
    peak = max(series)
    if not peak:
        return math.inf
    day = _from_quietest(series)
    low, high = refill / peak, (size + refill) / peak
    while high - low > 0.01 * high:
        middle = (low + high) / 2
        if _empties(day, middle, size=size, refill=refill):
            high = middle
        else:
            low = middle
    return low


def _buckets(measures: dict[str, dict[str, Any]], day: Day, transitions: list[float]) -> None:
    """The token buckets run over the day: StartExecution and state transitions."""
    for name, series in (("start_execution", day.created), ("state_transitions", transitions)):
        quota = QUOTAS[name]
        for region in REGIONS:
            size = quota.bucket(region)
            assert size is not None
            against = measures[name]["quotas"][region]
            against["bucket"] = size
            against.update(bucket(series, size=size, refill=quota.limit(region)))
            against["growth_before_limit"] = growth_before_throttle(
                series, size=size, refill=quota.limit(region)
            )
            # Over 1, the day's mean alone is more than the bucket refills: what waits never
            # catches up (the model's waits then only grow with the laps it runs).
            against["mean_to_refill"] = sum(series) / len(series) / quota.limit(region)


def first_throttled(measures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per region, the quota the day's load reaches first as it grows (all of jobrelay's
    work grows with the requests), and by how much it could grow before it does (below 1:
    it is reached already, and work waits)."""
    found = {}
    for region in REGIONS:
        rows = [
            (values["quotas"][region]["growth_before_limit"], name)
            for name, values in measures.items()
            if region in values.get("quotas", {})
        ]
        growth, name = min(rows)
        quota = measures[name]["quotas"][region]
        found[region] = {
            "measure": name,
            "quota": QUOTAS[measures[name]["quota"]].what,
            "peak_to_limit": quota["peak_to_limit"],
            "throttled": bool(quota.get("throttled", growth < 1)),
            "growth_before_limit": growth,
        }
    return found


# ------------------------------------------------------------------ the section
def measured(path: Path = RESULTS) -> tuple[Durations, Settings]:
    """Durations and per-round transitions from the last recorded run, where it has them."""
    durations, settings = Durations(), Settings()
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return durations, settings
    sources = []
    batches = {b["records"]: b for b in results.get("createjob", {}).get("batches", [])}
    if 10 in batches:
        durations = replace(
            durations,
            create_single=float(batches[10]["slowest_single_seconds"]),
            create_batch10=float(batches[10]["batch_seconds"]),
        )
        sources.append("CreateJob batches (createjob)")
    rounds_measured = results.get("tracking", {}).get("measured", {})
    if "task_seconds_mean" in rounds_measured:
        durations = replace(
            durations, poll=PROVIDER_LATENCY_SECONDS + float(rounds_measured["task_seconds_mean"])
        )
        settings = replace(
            settings,
            transitions_per_round=float(rounds_measured["transitions_per_round"]),
            transitions_per_execution=float(rounds_measured["transitions_per_execution"]),
        )
        sources.append("the poll task's own time and transitions per round (tracking)")
    if sources:
        measured_at = results.get("measured_at", "an earlier run")
        durations = replace(
            durations, source=f"bench/results.json ({measured_at}): " + "; ".join(sources)
        )
    return durations, settings


def run() -> dict[str, Any]:
    durations, settings = measured()
    prof = profile(round_seconds=durations.poll, first_poll_seconds=settings.first_poll_seconds)
    scenarios = {}
    for count in REQUESTS_PER_DAY:
        day = simulate(count, prof, settings=settings, durations=durations)
        scenarios[str(count)] = figures(day, prof, settings, durations)
    # Where work waits when a setting holds it back, on the same million: a creation rate of
    # 20 jobs a second in all (`max_creates_per_minute: 400` on each of the three providers'
    # connections), about what us-east-1's state-transition refill sustains.
    held = {}
    for name, setting in (
        ("creates_20_per_second", replace(settings, max_creates_per_second=HELD_CREATE_RATE)),
    ):
        day = simulate(REQUESTS_PER_DAY[-1], prof, settings=setting, durations=durations)
        held[name] = figures(day, prof, setting, durations)
    return {
        "requests_per_day": list(REQUESTS_PER_DAY),
        "burst": {"share": BURST_SHARE, "hour_starts_at_second": BURST_START},
        "jobs": {
            "templates": len(prof.templates),
            "mix": "bench.simulation.job_mix: log-uniform 1 min to 6 h, 2/3 with hints",
            "max_poll_seconds": prof.max_poll_seconds,
            "polls_per_job": prof.polls_per_job,
        },
        "durations": asdict(durations),
        "settings": asdict(settings),
        "per_request": per_request(settings),
        "regions": REGIONS,
        "quotas": {name: asdict(quota) for name, quota in QUOTAS.items()},
        "scenarios": scenarios,
        "held_back": held,
        "settings_that_bound": settings_that_bound(settings, durations),
    }


def per_request(settings: Settings) -> dict[str, float]:
    return {
        "create_job_aws_calls_per_record": CREATE_JOB_AWS_CALLS_PER_RECORD,
        "create_job_dynamodb_write_units_per_record": CREATE_JOB_DYNAMODB_WRITE_UNITS_PER_RECORD,
        "publish_dynamodb_write_units_per_outcome": PUBLISH_DYNAMODB_WRITE_UNITS_PER_OUTCOME,
        "transitions_per_round": settings.transitions_per_round,
        "transitions_per_execution": settings.transitions_per_execution,
        "limited_connection_write_units_per_request": LIMITED_CONNECTION_WRITE_UNITS_PER_REQUEST,
    }


def settings_that_bound(settings: Settings, durations: Durations) -> dict[str, Any]:
    """What the template's settings allow at most, whatever the load: the event source's
    maximum concurrency bounds StartExecution (and the new executions' first polls)."""
    per_invocation = durations.create(settings.batch_size)
    ceiling = settings.create_rate(durations)
    fits = {}
    for region in REGIONS:
        refill = QUOTAS["start_execution"].limit(region)
        fits[region] = {
            "start_execution_refill": refill,
            "max_concurrency_within_refill": math.floor(
                refill * per_invocation / settings.batch_size
            ),
        }
    return {
        "create_job_max_concurrency": settings.max_concurrency,
        "batch_size": settings.batch_size,
        "batch_seconds": per_invocation,
        "start_execution_ceiling_per_second": ceiling,
        "per_region": fits,
        "redelivery_window_seconds": VISIBILITY_TIMEOUT_SECONDS * MAX_RECEIVE_COUNT,
        "retention_seconds": MESSAGE_RETENTION_SECONDS,
    }
