# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=False, initializedcheck=False
"""Compiled :func:`operators.scoring.decide_batch`: the same hits and verdicts
(``tests/operators/kernels/test_verdicts.py``).

Per event, each enabled built-in rule's condition is tested here, and only a rule whose
condition holds is called (the reference rule itself, which builds the hit and its reason):
a condition here may be wider than the rule's, never narrower. The ensemble
(:func:`operators.ensemble.combine`) runs here with the same float operations in the same
order, rounding as Python's own ``round`` does (:func:`rounded`). Custom rules, allow-listed users and devices
and anything unusual go through the references. Change one, change both.
"""

from operators.ensemble import _DECISION, MODEL_COMPONENTS, Verdict, allowed
from operators.rules import RULES, RuleContext, _merchant_window, allow_listed
from operators.scoring import ScoredEvent, ShadowRules

from cpython.datetime cimport import_datetime
from libc.math cimport fabs, floor, isfinite, rint

import_datetime()

from datetime import UTC, datetime

cdef extern from *:
    """
    #ifndef KERNEL_SOURCE_DIGEST
    #define KERNEL_SOURCE_DIGEST ""
    #endif
    """
    const char* KERNEL_SOURCE_DIGEST

SOURCE_DIGEST = KERNEL_SOURCE_DIGEST.decode()
"""SHA-256 of this file when it was compiled (``operators.kernels`` refuses a stale build)."""

if MODEL_COMPONENTS != ("isolation_forest", "autoencoder", "supervised"):
    raise ImportError("operators.kernels.verdicts: the ensemble's components changed; update the kernel")

cdef double[4] _SCALE = [1.0, 10.0, 100.0, 1000.0]


cdef inline double _rounded(double x, int ndigits):
    """``round(x, ndigits)`` for ``0 <= ndigits <= 3``, bit for bit, most often without
    CPython's decimal conversion (about 0.6 us a call).

    ``round`` rounds the exact ``x * 10**ndigits`` to an integer N (ties to even) and
    returns the double nearest N / 10**ndigits. Below 2**52 every half-integer is a
    double, so the product p, rounded to the nearest double, is on the same side of each
    as the exact product, or on it: unless p is (about) a half-integer, N = rint(p). One
    IEEE division of the exact N by the exact scale is then that nearest double. A tie,
    anything within a margin of one, a huge value or a non-finite one goes to ``round``."""
    cdef double scale = _SCALE[ndigits]
    cdef double p = x * scale
    cdef double tie
    if isfinite(p) and fabs(p) < 4503599627370496.0:  # 2**52: floor and the difference are exact
        tie = fabs(p - floor(p) - 0.5)
        if tie > fabs(p) * 4.5e-16:  # a margin of two ulps of p
            return rint(p) / scale
    return round(x, ndigits)


def rounded(double x, int ndigits):
    """The kernel's ``round(x, ndigits)`` for ``0 <= ndigits <= 3`` (for its tests)."""
    if not 0 <= ndigits <= 3:
        raise ValueError("ndigits: 0 to 3")
    return _rounded(x, ndigits)


cdef enum Rule:
    VELOCITY, HIGH_AMOUNT, TRAVEL, HOURS, NEW_DEVICE, COUNTRY, DEVICE_LIST, USER_LIST, MERCHANT, OTHER

_CODES = {
    "velocity_check": VELOCITY,
    "high_amount": HIGH_AMOUNT,
    "impossible_travel": TRAVEL,
    "unusual_hours": HOURS,
    "new_device": NEW_DEVICE,
    "country_blacklist": COUNTRY,
    "device_blacklist": DEVICE_LIST,
    "user_blacklist": USER_LIST,
    "compromised_merchant": MERCHANT,
}


cdef class _Rules:
    """One rule set's enabled rules and thresholds, read once per batch."""

    cdef object ruleset, ctx
    cdef list functions
    cdef int codes[16]
    cdef int count
    cdef bint custom
    cdef long max_events, min_history, start_hour, end_hour, min_frauds
    cdef double multiplier, max_km, within_s, min_amount, min_share
    cdef object countries, devices, users, frauds_name, share_name

    def __init__(self, ruleset, blocklists):
        cfg = ruleset.config
        self.ruleset = ruleset
        self.ctx = RuleContext(cfg, blocklists)
        self.functions = list(self.ctx.enabled)
        by_function = {fn: name for name, fn in RULES.items()}
        if len(self.functions) > 16:
            raise ValueError("more built-in rules than the kernel knows")
        self.count = len(self.functions)
        for i, fn in enumerate(self.functions):
            self.codes[i] = _CODES.get(by_function.get(fn), OTHER)
        self.custom = bool(ruleset.compiled)
        self.max_events = cfg.velocity_check.max_events
        self.min_history = cfg.high_amount.min_history
        self.multiplier = cfg.high_amount.multiplier
        self.max_km = cfg.impossible_travel.max_km
        self.within_s = cfg.impossible_travel.within_s
        self.start_hour = cfg.unusual_hours.start_hour
        self.end_hour = cfg.unusual_hours.end_hour
        self.min_amount = cfg.new_device.min_amount
        self.countries = cfg.country_blacklist.countries | blocklists.countries
        self.devices = blocklists.devices
        self.users = blocklists.users
        _, self.frauds_name, self.share_name = _merchant_window(cfg.compromised_merchant.window_days)
        self.min_frauds = cfg.compromised_merchant.min_frauds
        self.min_share = cfg.compromised_merchant.min_share

    cdef bint may_fire(self, int code, ev, f) except -1:
        """Whether the rule of ``code`` may fire (True where unsure: the rule decides)."""
        if code == VELOCITY:
            return f.velocity_events > self.max_events
        if code == HIGH_AMOUNT:
            mean = f.user_mean_amount
            return f.user_event_count >= self.min_history and bool(mean) and ev.amount > self.multiplier * mean
        if code == TRAVEL:
            distance, since = f.distance_km, f.seconds_since_last_location
            return distance is not None and since is not None and distance > self.max_km and since <= self.within_s
        if code == HOURS:
            return self.start_hour <= f.hour_of_day < self.end_hour
        if code == NEW_DEVICE:
            return f.device_known is False and f.known_devices > 0 and ev.amount > self.min_amount
        if code == COUNTRY:
            loc = ev.location
            country = loc.country if loc is not None else None
            return bool(country) and country in self.countries
        if code == DEVICE_LIST:
            device = ev.device_id
            return bool(device) and device in self.devices
        if code == USER_LIST:
            return ev.user_id in self.users
        if code == MERCHANT:
            risk = f.risk
            frauds, share = risk.get(self.frauds_name), risk.get(self.share_name)
            return frauds is not None and share is not None and frauds >= self.min_frauds and share >= self.min_share
        return True

    cdef list hits(self, ev, f):
        """:meth:`RuleSet.evaluate`: the built-in rules that fire, then the custom ones."""
        cdef list out = []
        cdef int i
        for i in range(self.count):
            if self.may_fire(self.codes[i], ev, f):
                hit = self.functions[i](ev, f, self.ctx)
                if hit is not None:
                    out.append(hit)
        if self.custom:
            out += self.ruleset.custom_hits(ev, f)
        return out


cdef class _Ensemble:
    """:func:`operators.ensemble.combine`'s settings, read once per batch."""

    cdef bint evidence
    cdef double medium, high
    cdef list evidence_weights, weights

    def __init__(self, cfg):
        self.evidence = cfg.profile == "evidence"
        self.medium = cfg.medium_threshold
        self.high = cfg.high_threshold
        self.evidence_weights = list(cfg.evidence_weights.items())
        self.weights = [cfg.weights.get(name, 0.0) for name in ("rules", *MODEL_COMPONENTS)]

    cdef object combine(self, list hits, object forest, object autoencoder, object supervised):
        """:func:`operators.ensemble.combine` with the models' scores (None: absent)."""
        cdef double rules = 0.0, score, total, num, den, weight
        cdef long points = 0
        cdef bint force = False
        for hit in hits:
            points += hit.points
            if hit.force_high:
                force = True
        if hits:
            rules = <double>(100 if points > 100 else points)
        scores = {"rules": rules, "isolation_forest": forest, "autoencoder": autoencoder, "supervised": supervised}
        if self.evidence:
            if supervised is not None:
                score = supervised
            else:
                total = rules
                for name, w in self.evidence_weights:
                    value = scores.get(name)
                    if value is not None:
                        total += <double>w * <double>value
                score = total
        else:
            num = den = 0.0
            for k, value in enumerate((rules, forest, autoencoder, supervised)):
                weight = self.weights[k]
                if value is not None and weight > 0:
                    num += weight * <double>value
                    den += weight
            score = num / den
        if force and self.high > score:  # max(score, high)
            score = self.high
        if not score > 0.0:  # max(0.0, score)
            score = 0.0
        if not score < 100.0:  # min(100.0, score)
            score = 100.0
        cdef double final = _rounded(score, 2)
        level = "HIGH" if final >= self.high else "MEDIUM" if final >= self.medium else "LOW"
        return Verdict(final, level, _DECISION[level], level == "HIGH", scores)


cdef inline object _at(list column, Py_ssize_t i):
    return column[i] if column is not None else None


def decide_batch(batch, scores, str model_version, rules, blocklists, ensemble, double now, challenger=None, shadow_rules=None):
    """:func:`operators.scoring.decide_batch`."""
    cdef _Rules own = _Rules(rules, blocklists)
    cdef _Rules shadow = None
    if shadow_rules is not None and shadow_rules.version is not None:
        shadow = _Rules(shadow_rules, blocklists)
    cdef _Ensemble mix = _Ensemble(ensemble)
    scored_at = datetime.fromtimestamp(now, UTC)
    cdef list forest = scores.get("isolation_forest"), autoencoder = scores.get("autoencoder")
    cdef list supervised = scores.get("supervised")
    cdef list c_forest = None, c_autoencoder = None, c_supervised = None
    if challenger is not None:
        challenger_version, values = challenger
        c_forest, c_autoencoder = values.get("isolation_forest"), values.get("autoencoder")
        c_supervised = values.get("supervised")
    allowed_users, allowed_devices = blocklists.allowed_users, blocklists.allowed_devices
    rules_version = rules.version
    cdef list out = []
    cdef Py_ssize_t i
    cdef list hits, shadow_hits
    for i, item in enumerate(batch):
        acc = item.accepted
        ev = acc.event
        f = item.features
        hits = own.hits(ev, f)
        v_forest, v_auto, v_sup = _at(forest, i), _at(autoencoder, i), _at(supervised, i)
        verdict = mix.combine(hits, v_forest, v_auto, v_sup)
        device = ev.device_id
        if ev.user_id in allowed_users or (device and device in allowed_devices):
            allow = allow_listed(ev, blocklists)
            if allow is not None:
                hits = [*hits, allow]
                verdict = allowed(verdict)
        shadow_set = None
        if shadow is not None:
            shadow_hits = shadow.hits(ev, f)
            would = mix.combine(shadow_hits, v_forest, v_auto, v_sup).fraud_score
            shadow_set = ShadowRules(shadow_rules.version, would, [h.rule for h in shadow_hits])
        shadow_score = None
        if challenger is not None:
            shadow_score = (
                challenger_version,
                mix.combine(hits, _at(c_forest, i), _at(c_autoencoder, i), _at(c_supervised, i)).fraud_score,
            )
        out.append(
            ScoredEvent(
                ev,
                f,
                hits,
                verdict,
                model_version,
                scored_at,
                acc.ingest_ms,
                _rounded((now - acc.received_at) * 1000.0, 3),
                shadow_score,
                acc.request_id,
                rules_version,
                shadow_set,
            )
        )
    return out
