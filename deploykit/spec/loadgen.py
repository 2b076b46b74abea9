"""What a LoadGen run is asked to do (``LoadgenConfig``): the measurement part of a run spec for LoadGen scenarios.
Pure settings and their validation (no mlperf_loadgen here); ``deploykit.loadgen.settings`` turns them into
LoadGen's ``TestSettings``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from deploykit.core.config import MAX_QPS, MAX_QUERIES, MAX_SECONDS, one_of, require_int, require_positive
from deploykit.core.errors import InputError, UsageError

SCENARIOS = ("server", "offline", "multistream", "singlestream")
# deploykit's scenario name -> LoadGen's
LOADGEN_SCENARIO = {"server": "Server", "offline": "Offline", "multistream": "MultiStream",
                    "singlestream": "SingleStream"}
PEAK_METHODS = ("loadgen", "bisect")
DEFAULT_DURATION_S = 10.0  # LoadGen's own default min_duration
DEFAULT_BOUND_MS = 100.0  # LoadGen's own default server_target_latency_ns
DEFAULT_PERCENTILE = {"server": 99.0, "singlestream": 90.0, "multistream": 99.0}  # LoadGen's defaults
DEFAULT_SAMPLES_PER_QUERY = 8  # LoadGen's MultiStream default
QSL_SIZE = 1024  # performance samples LoadGen draws from (all the same input tensor: see sut.py)
OUTSTANDING_FLOOR = 64
OUTSTANDING_BOUNDS = 4  # the auto cap: the backlog the SUT needs 4x the latency bound to clear


@dataclass(frozen=True)
class LoadgenConfig:
    """One LoadGen test. ``None`` = deploykit's default (sized from the calibration) or LoadGen's."""

    scenario: str
    qps: float | None = None  # Server: target QPS (find-peak: the starting QPS); Offline: expected QPS
    latency_bound_ms: float | None = None  # Server: the latency bound at ``percentile``
    percentile: float | None = None  # Server / SingleStream / MultiStream target latency percentile, in %
    duration_s: float | None = None  # LoadGen's min_duration (None: 10 s, LoadGen's default)
    min_queries: int | None = None  # LoadGen's min_query_count
    max_outstanding: int | None = None  # Server: server_max_async_queries (None = auto, 0 = unlimited)
    samples_per_query: int | None = None  # MultiStream
    user_conf: str | None = None  # LoadGen user.conf file
    find_peak: bool = False
    peak_method: str = "loadgen"  # loadgen = LoadGen's FindPeakPerformance mode; bisect = deploykit's search
    peak_decimals: int = 0  # find-peak resolution: 10^-decimals QPS (LoadGen's default is 1)
    trace: bool = True  # LoadGen's trace log: per-sample latencies on LoadGen's clock
    calibration_s: float = 1.0
    batch: int = 1
    resolution: int | None = None
    seed: int = 0

    def __post_init__(self):
        sc = self.scenario
        if sc not in SCENARIOS:
            raise UsageError(f"unknown scenario {sc!r} (choose {one_of(SCENARIOS)})")
        if self.qps is not None:
            if not (isinstance(self.qps, (int, float)) and math.isfinite(self.qps) and self.qps > 0):
                raise UsageError(f"--qps must be a positive number, got {self.qps}")
            if sc not in ("server", "offline"):
                raise UsageError(f"--qps applies to --scenario server (arrival rate) and offline (expected rate), not "
                                 f"{sc}: LoadGen issues {sc} queries one after another")
        if self.latency_bound_ms is not None:
            if not (math.isfinite(self.latency_bound_ms) and self.latency_bound_ms > 0):
                raise UsageError(f"--latency-bound must be a positive number of ms, got {self.latency_bound_ms}")
            if sc != "server":
                raise UsageError(f"--latency-bound applies to --scenario server only (LoadGen has no latency bound "
                                 f"in {sc}; it reports the latency percentiles)")
        if self.percentile is not None:
            if not (0 < self.percentile < 100):
                raise UsageError(f"--percentile must be between 0 and 100 (exclusive), got {self.percentile}")
            if sc == "offline":
                raise UsageError("--percentile does not apply to --scenario offline (no latency target)")
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise UsageError(f"--duration must be a positive number of seconds, got {self.duration_s}")
        if not 0 <= self.peak_decimals <= 6:
            raise UsageError(f"--peak-decimals must be between 0 and 6, got {self.peak_decimals}")
        if self.min_queries is not None and self.min_queries < 1:
            raise UsageError(f"--min-queries must be positive, got {self.min_queries}")
        if self.max_outstanding is not None:
            if self.max_outstanding < 0:
                raise UsageError(f"--max-outstanding must be 0 (unlimited) or positive, got {self.max_outstanding}")
            if sc != "server":
                raise UsageError("--max-outstanding applies to --scenario server only")
        if self.samples_per_query is not None:
            if self.samples_per_query < 1:
                raise UsageError(f"--samples-per-query must be positive, got {self.samples_per_query}")
            if sc != "multistream":
                raise UsageError("--samples-per-query applies to --scenario multistream only")
        if self.find_peak and sc != "server":
            raise UsageError(f"--find-peak searches the highest Server QPS within the latency bound; it does not "
                             f"apply to --scenario {sc}")
        if self.peak_method not in PEAK_METHODS:
            raise UsageError(f"--peak-method must be {one_of(PEAK_METHODS)}, got {self.peak_method!r}")
        if not self.calibration_s > 0:
            raise UsageError(f"calibration time must be positive, got {self.calibration_s}")
        # the bounds (core.config): LoadGen allocates its whole query schedule up front, so a rate, a duration or a
        # query count past them ends in bad_alloc / SIGSEGV inside LoadGen instead of an error
        require_positive("--qps", self.qps, maximum=MAX_QPS)
        require_positive("--duration", self.duration_s, maximum=MAX_SECONDS)
        require_int("--min-queries", self.min_queries, 1, MAX_QUERIES)
        require_int("--max-outstanding", self.max_outstanding, 0, MAX_QUERIES)
        require_int("--samples-per-query", self.samples_per_query, 1, 1_000_000)
        require_positive("calibration time", self.calibration_s, maximum=MAX_SECONDS)
        if self.qps is not None and self.qps * self.resolved_duration_s() > MAX_QUERIES:
            raise UsageError(f"--qps {self.qps:g} for {self.resolved_duration_s():g} s is "
                             f"{self.qps * self.resolved_duration_s():.3g} queries, more than LoadGen can schedule "
                             f"here (at most {MAX_QUERIES:.0e}): lower --qps or --duration")
        if self.user_conf is not None:
            if not Path(self.user_conf).is_file():
                raise InputError(f"LoadGen user.conf not found: {self.user_conf}")
            check_user_conf(self.user_conf)

    @property
    def loadgen_scenario(self) -> str:
        return LOADGEN_SCENARIO[self.scenario]

    @property
    def concurrent(self) -> bool:
        """Whether the scenario keeps several requests in flight (all but SingleStream)."""
        return self.scenario != "singlestream"

    def resolved_percentile(self) -> float | None:
        if self.scenario == "offline":
            return None
        return self.percentile if self.percentile is not None else DEFAULT_PERCENTILE[self.scenario]

    def resolved_duration_s(self) -> float:
        return self.duration_s if self.duration_s is not None else DEFAULT_DURATION_S

    def resolved_bound_ms(self) -> float | None:
        if self.scenario != "server":
            return None
        return self.latency_bound_ms if self.latency_bound_ms is not None else DEFAULT_BOUND_MS

    def record(self) -> dict:
        """The report's settings for this test (the values asked for; LoadGen's effective ones are apart)."""
        return {
            "scenario": self.scenario,
            "qps": self.qps,
            "latency_bound_ms": self.resolved_bound_ms(),
            "percentile": self.resolved_percentile(),
            "duration_s": self.resolved_duration_s(),
            "min_queries": self.min_queries,
            "max_outstanding": self.max_outstanding,
            "samples_per_query": self.samples_per_query,
            "user_conf": self.user_conf,
            "find_peak": self.find_peak,
            "peak_method": self.peak_method if self.find_peak else None,
            "peak_decimals": self.peak_decimals if self.find_peak else None,
            "trace": self.trace,
            "calibration_s": self.calibration_s,
            "batch": self.batch,
            "resolution": self.resolution,
            "seed": self.seed,
        }


def check_user_conf(path: str) -> None:
    """Refuse, before any work, a user.conf LoadGen would reject: the first bad line, named (LoadGen's own
    grammar: ``key = value`` with a number for value; a line whose first word is ``#`` is a comment)."""
    from deploykit.core.guarded import read_text

    text = read_text(path, max_bytes=1024 * 1024, what="LoadGen user.conf", follow=True)
    for n, line in enumerate(text.splitlines(), 1):
        state = 0  # 0 = key, 1 = '=', 2 = value
        key = ""
        for tok in line.split():
            if tok == "#" and state != 2:
                break
            if state == 0:
                key = tok
            if state == 2:
                if not _is_number(tok):
                    raise InputError(f"{path} line {n}: LoadGen needs a number after '=', got {tok!r}")
                _check_user_conf_value(path, n, key, tok)
                continue
            if state == 1 and tok != "=":
                raise InputError(f"{path} line {n}: LoadGen expects 'model.scenario.key = value', got {line.strip()!r}")
            state += 1
        if state in (1, 2) and not _has_value(line):
            raise InputError(f"{path} line {n}: no value in {line.strip()!r}")


# the keys LoadGen's user.conf reader looks up (TestSettings::FromConfig), with the bounds deploykit puts on their
# values (core.config): an unknown key is a typo LoadGen would ignore without a word; a value past a bound ends in
# bad_alloc or SIGSEGV inside LoadGen (a target_qps of 1e300 schedules more queries than there is memory)
_MS = MAX_SECONDS * 1000
USER_CONF_KEYS: dict[str, tuple[float, float]] = {
    "target_qps": (1e-9, MAX_QPS), "target_latency": (0, _MS), "target_latency_percentile": (0, 100),
    "min_duration": (0, _MS), "max_duration": (0, _MS), "min_query_count": (0, MAX_QUERIES),
    "max_query_count": (0, MAX_QUERIES), "performance_sample_count_override": (0, MAX_QUERIES),
    "max_async_queries": (0, MAX_QUERIES), "samples_per_query": (1, 1_000_000),
    "coalesce_queries": (0, 1), "print_timestamps": (0, 1), "performance_issue_unique": (0, 1),
    "performance_issue_same": (0, 1), "performance_issue_same_index": (0, MAX_QUERIES),
    "sample_concatenate_permutation": (0, 1), "use_token_latencies": (0, 1), "infer_token_latencies": (0, 1),
    "ttft_latency": (0, _MS * 1e6), "tpot_latency": (0, _MS * 1e6), "token_latency_scaling_factor": (0, 1e9),
    "accuracy_log_probability": (0, 1), "accuracy_log_sampling_target": (0, MAX_QUERIES),
    "server_num_issue_query_threads": (0, 1024), "test05": (0, 1), "mode": (0, 4),
    **{k: (0, 2**64 - 1) for k in ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed",
                                   "accuracy_log_rng_seed", "test05_qsl_rng_seed", "test05_sample_index_rng_seed",
                                   "test05_schedule_rng_seed")},
}


def _check_user_conf_value(path, n: int, key: str, tok: str) -> None:
    name = key.rsplit(".", 1)[-1]
    if name not in USER_CONF_KEYS:
        raise InputError(f"{path} line {n}: {name!r} is not a key LoadGen reads from a user.conf (known: "
                         f"{', '.join(sorted(USER_CONF_KEYS))})")
    try:
        value = float(int(tok, 0)) if tok.lstrip("+-").isdigit() or tok.lower().startswith(("0x", "0o", "0b")) \
            else float(tok)
    except (ValueError, OverflowError):
        value = math.inf
    lo, hi = USER_CONF_KEYS[name]
    if not (math.isfinite(value) and lo <= value <= hi):
        raise InputError(f"{path} line {n}: {name} = {tok} is out of range (between {lo:g} and {hi:g})")


def _is_number(tok: str) -> bool:
    for conv in (lambda t: int(t, 0), float):
        try:
            conv(tok)
            return True
        except ValueError:
            pass
    return False


def _has_value(line: str) -> bool:
    toks = line.split()
    return len(toks) >= 3 and toks[1] == "="


def default_min_queries(percentile: float) -> int:
    """The default minimum query count at a target latency percentile: LoadGen's early stopping needs, with no
    query over the bound, the n with percentile^n <= 1% (99% confidence: 459 at p99, 90 at p95, 44 at p90);
    half as many again leaves room for a few late queries (and covers the 662 SingleStream / MultiStream p99
    estimates need), rounded up to tens; never below LoadGen's own default of 100."""
    q = percentile / 100.0
    n = math.ceil(math.log(0.01) / math.log(q))
    return max(100, math.ceil(1.5 * n / 10) * 10)
