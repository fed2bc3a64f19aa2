"""Daemon configuration: a TOML file parsed into frozen dataclasses.

The keys, their types and their defaults are the contract of docs/protocol.md section 4; the
keys marked *extension* below are optional additions. Parsing is strict: an unknown key, a wrong
type or an impossible value raises :class:`ConfigError`, whose message is one line that starts
with the dotted path of the offending key (``model[1].components: must be >= 1 (got 0)``), so
the daemon can print it and exit.

This module only parses and validates. Whether an endpoint can actually be bound is checked by
the daemon when it opens its sockets.

To add a key: a field (with its default) on the dataclass of its table, and its checker in the
``_*_FIELDS`` table below. Defaults are read from the dataclasses, never written twice; keys
that are also estimator parameters take their ranges from
:data:`streamgmm.core.constraints.PARAMETER_CONSTRAINTS`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamgmm.core.constraints import PARAMETER_CONSTRAINTS, Interval, Options
from streamgmm.core.online import OnlineSettings
from streamgmm.daemon.overload import DEFAULT_BUDGET_S

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

__all__ = [
    "Config",
    "ConfigError",
    "CurveConfig",
    "ModelConfig",
    "ServiceConfig",
    "SocketOptions",
    "load_config",
    "parse_config",
]

ENDPOINT_SCHEMES = ("tcp://", "ipc://", "inproc://")
# service.log_level (and ``streamgmm run --log-level``).
LOG_LEVELS = ("debug", "info", "warning", "error")
# [[model]] keys that may also be spelled as the estimator's parameter: estimator name ->
# the key of docs/protocol.md (both are accepted; giving both is an error).
MODEL_KEY_SYNONYMS = {"n_components": "components", "retain_size": "window_points"}
# Keys of earlier versions: a config that still sets one gets a line saying what replaced it.
REMOVED_MODEL_KEYS = {
    "relocations": "the online model's work now runs inline at a fixed cost; set 'effort'",
    "relocate_budget": "relocations are gone; the work per point is set by 'effort'",
    "move_budget": "moves are paid out of 'effort' (and 'moves = false' turns them off)",
}

_INT, _REAL = numbers.Integral, numbers.Real
# libzmq takes the millisecond and HWM options as a C int and ZMQ_MAXMSGSIZE as int64.
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


class ConfigError(ValueError):
    """An invalid configuration.

    Parameters
    ----------
    key : str
        Dotted path of the offending key, e.g. ``"model[1].components"``; ``"<file>"`` when the
        file itself cannot be read or is not valid TOML.
    message : str
        What is wrong with it.

    Notes
    -----
    ``str(err)`` is always a single line, ``"<key>: <message>"``.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        # One line, whatever the message holds (TOML errors, reprs of odd values).
        self.message = " ".join(str(message).split())
        super().__init__(f"{key}: {self.message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the two-argument constructor picklable (e.g. across a multiprocessing boundary).
        return (type(self), (self.key, self.message))


@dataclass(frozen=True)
class SocketOptions:
    """ZeroMQ socket options (``[service.sockets]``, an extension of the contract).

    Attributes
    ----------
    linger_ms : int
        ZMQ_LINGER of every socket: how long close waits to flush queued messages.
    rcvhwm : int
        ZMQ_RCVHWM of the ingest SUB socket (messages queued per publisher before dropping).
    sndhwm : int
        ZMQ_SNDHWM of the update PUB socket (messages queued per subscriber before dropping).
    maxmsgsize : int
        ZMQ_MAXMSGSIZE in bytes for inbound messages; ``-1`` means no limit. The default,
        16 MiB, holds a 300,000-point 3-D scan in float64 (7.2 MB) with room to spare.
    heartbeat_ivl_ms, heartbeat_timeout_ms, heartbeat_ttl_ms : int
        ZMTP heartbeats (ZMQ_HEARTBEAT_IVL / _TIMEOUT / _TTL); ``0`` disables them.
    handshake_ivl_ms : int
        ZMQ_HANDSHAKE_IVL: a peer that does not finish the handshake in time is dropped.
    reconnect_ivl_ms, reconnect_ivl_max_ms : int
        ZMQ_RECONNECT_IVL and ZMQ_RECONNECT_IVL_MAX for connected endpoints (back-off).
    """

    linger_ms: int = 1000
    rcvhwm: int = 1000
    sndhwm: int = 1000
    maxmsgsize: int = 16_777_216
    heartbeat_ivl_ms: int = 1000
    heartbeat_timeout_ms: int = 3000
    heartbeat_ttl_ms: int = 3000
    handshake_ivl_ms: int = 5000
    reconnect_ivl_ms: int = 100
    reconnect_ivl_max_ms: int = 5000


@dataclass(frozen=True)
class ServiceConfig:
    """The ``[service]`` table.

    Attributes
    ----------
    ingest : tuple of str
        Endpoints the point SUB socket binds (publishers connect to them).
    connect : tuple of str
        Endpoints the point SUB socket connects to (publishers bind them).
    publish : str
        Endpoint the mixture-update PUB socket binds.
    control : str
        Endpoint the control ROUTER socket binds.
    sockets : SocketOptions
        ZeroMQ socket options (extension).
    log_level : str
        One of ``"debug"``, ``"info"``, ``"warning"``, ``"error"`` (extension).
    metrics : str
        ``"host:port"`` of the HTTP ``/metrics`` and ``/healthz`` endpoint; ``""`` disables
        it (extension).
    stall_after_s : float
        ``/healthz`` reports unhealthy when the service loop has not turned for this long
        (extension).
    curve : CurveConfig or None
        CURVE encryption and client authentication on all three sockets (extension).
    threads : int
        Threads that score the E-steps' row chunks and step several timer-publishing models
        at once (extension), default 1: on the 2-vCPU development machine 2 threads gave
        0.85-0.93x the whole-sweep capacity of 1 (the moves hold the GIL). The models do not
        depend on it (:mod:`streamgmm.parallel`).
    """

    publish: str
    control: str
    ingest: tuple[str, ...] = ("tcp://*:5555",)
    connect: tuple[str, ...] = ()
    sockets: SocketOptions = field(default_factory=SocketOptions)
    log_level: str = "info"
    metrics: str = ""
    stall_after_s: float = 3.0
    curve: CurveConfig | None = None
    threads: int = 1


@dataclass(frozen=True)
class CurveConfig:
    """The ``[service.curve]`` table (extension): CURVE on every socket of the daemon.

    Attributes
    ----------
    server_secret_key : str
        Path of the daemon's secret certificate (``streamgmm keygen``); must be mode 0600.
    allowed_clients : str
        Directory of the public certificates of the clients allowed in; re-read on SIGHUP,
        so deleting a file there and sending SIGHUP revokes that client.
    """

    server_secret_key: str
    allowed_clients: str


@dataclass(frozen=True)
class ModelConfig:
    """One ``[[model]]`` table: a named mixture fed by one topic prefix.

    Attributes
    ----------
    name : str
        Unique, non-empty model name (updates go out on topic ``gmm/<name>``).
    topic : str
        Subscribed topic prefix of the sensor points.
    dim : int
        Dimension ``d`` of the points.
    components : int
        Number of mixture components ``K``. Also spelled ``n_components``.
    covariance_type : str
        ``"full"``, ``"diag"``, ``"spherical"`` or ``"tied"``.
    seed : int
        Seed of the model's random generator (initialisation, reservoir sampling).
    checkpoint : str
        Checkpoint file path; ``""`` disables checkpoints.
    checkpoint_every_s : float
        Seconds between checkpoints while the state changes.
    publish_every_s : float
        At most one online update per interval; ``0`` publishes after every batch (and
        steps message by message). Also the sensor time one online step spans at most: a
        step folds consecutive messages whose stamps lie within it, up to 4,096 rows
        (:mod:`streamgmm.daemon.steps`).
    refit_every_s : float
        Seconds between batch refits on the retained points; ``0`` refits only on request.
    window_points : int
        Points retained (at least ``components``): the online model's memory (it re-scores
        a uniform subsample of at most 8,192 of them) and what refits fit. Also spelled
        ``retain_size``.
    retain : str
        ``"reservoir"`` (uniform sample of the whole stream) or ``"window"`` (latest points).
    reg_covar : float
        Added to covariance diagonals for numerical stability (extension).
    step_decay, step_offset, step_constant
        The online step schedule (extension; ``GaussianMixture``'s parameters of the same
        names): ``eta = (n / m + t0) ** -alpha`` for a batch of ``m`` points after ``n``;
        ``step_constant`` in (0, 1] is a constant step that keeps tracking drifting data
        (with ``retain = "window"`` leave it at ``0``: the window forgets by itself),
        ``0`` (``None`` in the library) the decaying one.
    effort : float
        E-step evaluations per absorbed point spent on re-scoring retained points and on
        moves (extension; ``GaussianMixture(effort=...)``): higher is slower and closer to
        batch EM on sensor-ordered streams.
    moves : bool
        Birth and merge moves and re-seeding (extension; ``GaussianMixture(moves=...)``).
    max_points_per_message : int
        Messages with more points are rejected (extension).
    max_backlog_points : int
        Rows of accepted messages the model queues while it absorbs them (extension): a
        burst of up to this many points (a recording replayed at full speed) is read from
        ZeroMQ's queue at once and absorbed whole, late; past it reading pauses and ZeroMQ's
        queue holds (and at its high-water mark drops) the rest.
    max_abs_coordinate : float
        Rows with a coordinate beyond this magnitude are dropped and counted in
        ``rows_dropped_range``: squaring them would overflow (extension).
    min_range, max_range : float
        Rows nearer than ``min_range`` or farther than ``max_range`` from the sensor origin
        (the norm of the first three coordinates, in the points' units: metres for LiDAR)
        are dropped before the model sees them, counted per model in ``status``
        (``rows_below_min_range``, ``rows_beyond_max_range``); ``0`` = no limit (extension).
    axes : tuple of str
        Names of the ``dim`` axes, e.g. ``["ax", "ay", "az", "gx", "gy", "gz"]`` for IMU
        samples; empty: unnamed. Reported in ``status``; ``streamgmm watch --plot`` labels
        its views with them (extension).
    checkpoint_generations : int
        Checkpoint files kept, newest first (extension).
    sample_points : int
        ``0`` (off) or the size of the uniform sample of the points absorbed since the last
        update that each published update carries as ``sample`` (extension; drawn by its
        own seeded generator: the model is the same with or without it).
    overload_budget_s : float
        Thinning under overload (extension; :mod:`streamgmm.daemon.overload`): when the
        model's backlog would take it longer than this to absorb, at its measured seconds per
        point, every message entering it is cut to a uniform subset that fits, which stands
        for all of its points; ``0`` never thins (the backlog grows to ``max_backlog_points``,
        then ZeroMQ's queue fills and drops whole messages instead).
    """

    name: str
    topic: str
    dim: int
    components: int
    covariance_type: str = "full"
    seed: int = 0
    checkpoint: str = ""
    checkpoint_every_s: float = 5.0
    publish_every_s: float = 0.1
    refit_every_s: float = 60.0
    window_points: int = 200_000
    retain: str = "reservoir"
    reg_covar: float = 1e-6
    step_decay: float = OnlineSettings.step_decay
    step_offset: float = OnlineSettings.step_offset
    step_constant: float | None = None
    max_points_per_message: int = 1_000_000
    max_backlog_points: int = 4_194_304
    max_abs_coordinate: float = 1e15
    min_range: float = 0.0
    max_range: float = 0.0
    axes: tuple[str, ...] = ()
    checkpoint_generations: int = 2
    effort: float = OnlineSettings.effort
    moves: bool = OnlineSettings.moves
    sample_points: int = 0
    overload_budget_s: float = DEFAULT_BUDGET_S


@dataclass(frozen=True)
class Config:
    """A whole daemon configuration.

    Attributes
    ----------
    service : ServiceConfig
        The ``[service]`` table.
    models : tuple of ModelConfig
        The ``[[model]]`` tables, in file order (at least one).
    path : str or None
        The file it was loaded from, if any.
    """

    service: ServiceConfig
    models: tuple[ModelConfig, ...]
    path: str | None = None


# --------------------------------------------------------------------------- field checkers
# Each checker takes (key, value) and returns the normalised value or raises ConfigError.

Checker = Callable[[str, Any], Any]


def _show(value: Any) -> str:
    """A short repr for error messages (long values are cut so the line stays readable)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _integer(rule: Interval | None = None, *, or_value: int | None = None) -> Checker:
    """A TOML integer (not a bool), then ``rule`` (``or_value`` also accepted)."""

    def check(key: str, value: Any) -> int:
        # bool is a subclass of int; `dim = true` is a typo, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer (got {_show(value)})")
        if (or_value is not None and value == or_value) or rule is None:
            return value
        if not rule.is_satisfied_by(value):
            alt = f" or {or_value}" if or_value is not None else ""
            raise ConfigError(key, f"must be {rule.bounds()}{alt} (got {value})")
        return value

    return check


def _number(rule: Interval | None = None) -> Checker:
    """A finite TOML number (integers become floats), then ``rule``."""

    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number (got {_show(value)})")
        value = float(value)
        # TOML allows nan and inf; no duration or rate here means anything with them.
        if not math.isfinite(value):
            raise ConfigError(key, f"must be a finite number (got {value})")
        if rule is not None and not rule.is_satisfied_by(value):
            raise ConfigError(key, f"must be {rule.bounds()} (got {value})")
        return value

    return check


def _at_least(minimum: float, maximum: float | None = None, kind: type = _INT) -> Interval:
    return Interval(kind, minimum, maximum, closed="both" if maximum is not None else "left")


def _above(minimum: float) -> Interval:
    return Interval(_REAL, minimum, None, closed="neither")


def _param(name: str) -> Checker:
    """The estimator's own rule for parameter ``name`` (core.constraints), on TOML values."""
    (rule,) = [c for c in PARAMETER_CONSTRAINTS[name] if c is not None]
    if isinstance(rule, Options):
        if all(isinstance(v, bool) for v in rule.values):
            return _bool
        return _choice(rule)
    return _integer(rule) if rule.kind is _INT else _number(rule)


def _str(*, non_empty: bool = False) -> Checker:
    def check(key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string (got {_show(value)})")
        if non_empty and not value.strip():
            raise ConfigError(key, "must be a non-empty string")
        return value

    return check


def _choice(rule: Options) -> Checker:
    """A TOML string among ``rule.values``."""

    def check(key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string (got {_show(value)})")
        if not rule.is_satisfied_by(value):
            allowed = ", ".join(repr(o) for o in rule.values)
            raise ConfigError(key, f"must be one of {allowed} (got {_show(value)})")
        return value

    return check


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false (got {_show(value)})")
    return value


def _endpoint(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected an endpoint string (got {_show(value)})")
    scheme = next((s for s in ENDPOINT_SCHEMES if value.startswith(s)), None)
    if scheme is None or len(value) == len(scheme):
        schemes = ", ".join(repr(s) for s in ENDPOINT_SCHEMES)
        raise ConfigError(key, f"endpoint must start with one of {schemes} (got {_show(value)})")
    if scheme == "tcp://":
        # libzmq takes the port as it comes: 55555555 would wrap around to another port.
        _, sep, port = value[len(scheme):].rpartition(":")
        if not sep or not (port == "*" or (port.isdigit() and 1 <= int(port) <= 65535)):
            raise ConfigError(key, f"a tcp endpoint needs a port from 1 to 65535 or '*' "
                              f"(got {_show(value)})")
    return value


def _endpoint_list(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list of endpoint strings (got {_show(value)})")
    return tuple(_endpoint(f"{key}[{i}]", item) for i, item in enumerate(value))


def _host_port(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a \"host:port\" string (got {_show(value)})")
    if value == "":
        return value
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(
            key, f"expected \"host:port\", e.g. \"127.0.0.1:9100\" (got {_show(value)})"
        )
    return value


def _names(key: str, value: Any) -> tuple[str, ...]:
    """A list of distinct non-empty strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(key, f"expected a list of non-empty names (got {_show(value)})")
    if len(set(value)) != len(value):
        raise ConfigError(key, f"names repeat (got {_show(value)})")
    return tuple(value)


def _step_constant(key: str, value: Any) -> float | None:
    """``0`` is the decaying step (``None`` in the library); else a constant step in (0, 1]."""
    value = _number()(key, value)
    if value == 0.0:
        return None
    rule = next(c for c in PARAMETER_CONSTRAINTS["step_constant"] if isinstance(c, Interval))
    if not rule.is_satisfied_by(value):
        raise ConfigError(
            key, f"must be {rule.bounds()}, or 0 for the decaying step (got {value})"
        )
    return value


# ------------------------------------------------------------------------------- the schema
# key -> checker. The defaults (and which keys are required) are the dataclasses' own.

_SOCKET_FIELDS: dict[str, Checker] = {
    "linger_ms": _integer(_at_least(0, _INT32_MAX)),
    "rcvhwm": _integer(_at_least(0, _INT32_MAX)),
    "sndhwm": _integer(_at_least(0, _INT32_MAX)),
    # Below 1 KiB not even a small header fits; -1 is libzmq's "unlimited".
    "maxmsgsize": _integer(_at_least(1024, _INT64_MAX), or_value=-1),
    "heartbeat_ivl_ms": _integer(_at_least(0, _INT32_MAX)),
    "heartbeat_timeout_ms": _integer(_at_least(0, _INT32_MAX)),
    "heartbeat_ttl_ms": _integer(_at_least(0, _INT32_MAX)),
    "handshake_ivl_ms": _integer(_at_least(0, _INT32_MAX)),
    "reconnect_ivl_ms": _integer(_at_least(0, _INT32_MAX)),
    "reconnect_ivl_max_ms": _integer(_at_least(0, _INT32_MAX)),
}

_SERVICE_FIELDS: dict[str, Checker] = {
    "ingest": _endpoint_list,
    "connect": _endpoint_list,
    "publish": _endpoint,
    "control": _endpoint,
    "log_level": _choice(Options(LOG_LEVELS)),
    "metrics": _host_port,
    "stall_after_s": _number(_above(0.0)),
    "threads": _integer(_at_least(1, 1024)),
    # "sockets" and "curve" are sub-tables, handled separately.
}

_CURVE_FIELDS: dict[str, Checker] = {
    "server_secret_key": _str(non_empty=True),
    "allowed_clients": _str(non_empty=True),
}

_MODEL_FIELDS: dict[str, Checker] = {
    "name": _str(non_empty=True),
    "topic": _str(),
    "dim": _integer(_at_least(1)),
    "components": _param("n_components"),
    "covariance_type": _param("covariance_type"),
    "seed": _integer(_at_least(0)),
    "checkpoint": _str(),
    "checkpoint_every_s": _number(_at_least(0.0, kind=_REAL)),
    "publish_every_s": _number(_at_least(0.0, kind=_REAL)),
    "refit_every_s": _number(_at_least(0.0, kind=_REAL)),
    "window_points": _param("retain_size"),  # also >= components, checked after
    "retain": _param("retain"),
    # Stricter than the estimator (>= 0): an unregularised daemon model dies on the first
    # collapsed component.
    "reg_covar": _number(_above(0.0)),
    "step_decay": _param("step_decay"),
    "step_offset": _param("step_offset"),
    "step_constant": _step_constant,
    "max_points_per_message": _integer(_at_least(1)),
    "max_backlog_points": _integer(_at_least(1)),
    "max_abs_coordinate": _number(_above(0.0)),
    "min_range": _number(_at_least(0.0, kind=_REAL)),
    "max_range": _number(_at_least(0.0, kind=_REAL)),  # also > min_range unless 0, checked after
    "axes": lambda key, value: _names(key, value),  # as many as dim, checked after
    "checkpoint_generations": _integer(_at_least(1, 1000)),
    "effort": _param("effort"),
    "moves": _param("moves"),
    "sample_points": _integer(_at_least(0, 1_000_000)),
    "overload_budget_s": _number(_at_least(0.0, kind=_REAL)),
}

_REQUIRED = object()


def _defaults(cls: type) -> dict[str, Any]:
    """Field name -> default of a config dataclass (``_REQUIRED`` where it has none)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = _REQUIRED
    return out


_TOP_LEVEL = ("service", "model")


def _reject_unknown(table: Mapping[str, Any], known: Any, prefix: str) -> None:
    known = list(known)
    for key in table:
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{prefix}{key}", f"unknown key{suffix}")


def _parse_table(
    table: Mapping[str, Any], cls: type, fields: Mapping[str, Checker], prefix: str
) -> dict[str, Any]:
    """Check every field of ``table`` against ``fields``; fill in the defaults of ``cls``."""
    defaults = _defaults(cls)
    out: dict[str, Any] = {}
    for key, check in fields.items():
        path = f"{prefix}{key}"
        default = defaults[key]
        if key in table:
            out[key] = check(path, table[key])
        elif default is _REQUIRED:
            raise ConfigError(path, "required key is missing")
        else:
            out[key] = default
    return out


def _expect_table(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a table (got {_show(value)})")
    return value


def _parse_service(data: Mapping[str, Any]) -> ServiceConfig:
    if "service" not in data:
        raise ConfigError("service", "required table is missing")
    table = _expect_table("service", data["service"])
    _reject_unknown(table, [*_SERVICE_FIELDS, "sockets", "curve"], "service.")
    if "ingest" not in table and "connect" not in table:
        raise ConfigError("service.ingest", "give at least one of 'ingest' or 'connect'")
    values = _parse_table(table, ServiceConfig, _SERVICE_FIELDS, "service.")
    if not values["ingest"] and not values["connect"]:
        raise ConfigError("service.ingest", "'ingest' and 'connect' are both empty")
    # Two sockets of the daemon cannot bind the same endpoint; say so now, not as a bind error.
    if values["control"] == values["publish"]:
        raise ConfigError("service.control", "same endpoint as service.publish")
    for i, endpoint in enumerate(values["ingest"]):
        if endpoint in (values["publish"], values["control"]):
            raise ConfigError(f"service.ingest[{i}]", "same endpoint as publish or control")

    sockets_table = _expect_table("service.sockets", table.get("sockets", {}))
    _reject_unknown(sockets_table, _SOCKET_FIELDS, "service.sockets.")
    sockets = SocketOptions(
        **_parse_table(sockets_table, SocketOptions, _SOCKET_FIELDS, "service.sockets.")
    )
    curve = None
    if "curve" in table:
        curve_table = _expect_table("service.curve", table["curve"])
        _reject_unknown(curve_table, _CURVE_FIELDS, "service.curve.")
        curve = CurveConfig(
            **_parse_table(curve_table, CurveConfig, _CURVE_FIELDS, "service.curve.")
        )
    return ServiceConfig(sockets=sockets, curve=curve, **values)


def _resolve_synonyms(table: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The table with the estimator's spellings renamed to the protocol's keys."""
    out = dict(table)
    for key, why in REMOVED_MODEL_KEYS.items():
        if key in out:
            raise ConfigError(f"{prefix}{key}", f"no longer a key: {why}")
    for alias, key in MODEL_KEY_SYNONYMS.items():
        if alias in out:
            if key in out:
                raise ConfigError(f"{prefix}{alias}", f"give '{alias}' or '{key}', not both")
            _MODEL_FIELDS[key](f"{prefix}{alias}", out[alias])  # errors name the user's key
            out[key] = out.pop(alias)
    return out


def _parse_models(data: Mapping[str, Any]) -> tuple[ModelConfig, ...]:
    if "model" not in data:
        raise ConfigError("model", "at least one [[model]] table is required")
    tables = data["model"]
    if not isinstance(tables, list):
        raise ConfigError("model", f"expected an array of tables [[model]] (got {_show(tables)})")
    if not tables:
        raise ConfigError("model", "at least one [[model]] table is required")
    models: list[ModelConfig] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(tables):
        prefix = f"model[{i}]."
        table = _resolve_synonyms(_expect_table(f"model[{i}]", raw), prefix)
        _reject_unknown(table, [*_MODEL_FIELDS, *MODEL_KEY_SYNONYMS], prefix)
        values = _parse_table(table, ModelConfig, _MODEL_FIELDS, prefix)
        name = values["name"]
        if name in seen:
            raise ConfigError(
                f"{prefix}name", f"duplicate model name {name!r} (see model[{seen[name]}])"
            )
        seen[name] = i
        if values["window_points"] < values["components"]:
            raise ConfigError(
                f"{prefix}window_points",
                f"must be >= components ({values['components']}) (got {values['window_points']})",
            )
        if values["axes"] and len(values["axes"]) != values["dim"]:
            raise ConfigError(f"{prefix}axes", f"names {len(values['axes'])} axes, dim is "
                              f"{values['dim']}")
        if 0 < values["max_range"] <= values["min_range"]:
            raise ConfigError(
                f"{prefix}max_range",
                f"must be above min_range ({values['min_range']}), or 0 for no limit "
                f"(got {values['max_range']})",
            )
        models.append(ModelConfig(**values))
    return tuple(models)


def parse_config(data: Mapping[str, Any], path: str | None = None) -> Config:
    """Validate an already-parsed TOML document.

    Parameters
    ----------
    data : Mapping
        The document, as returned by ``tomllib.load``.
    path : str, optional
        Where it came from; kept in :attr:`Config.path`.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        On the first unknown key, wrong type, impossible value or missing required key.
    """
    data = _expect_table("<root>", data)
    _reject_unknown(data, _TOP_LEVEL, "")
    service = _parse_service(data)
    models = _parse_models(data)
    return Config(service=service, models=models, path=path)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML configuration file.

    Parameters
    ----------
    path : str or os.PathLike
        The TOML file.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        With ``key="<file>"`` if the file cannot be read or is not valid TOML, otherwise as
        :func:`parse_config`.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError("<file>", f"cannot read {name}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<file>", f"{name} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("<file>", f"{name} is not valid UTF-8: {exc}") from exc
    return parse_config(data, path=name)
