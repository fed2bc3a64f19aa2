"""Tests for streamgmm.daemon.config: defaults, the example file, and one error per bad key."""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

from streamgmm.daemon.config import (
    Config,
    ConfigError,
    ModelConfig,
    ServiceConfig,
    SocketOptions,
    load_config,
    parse_config,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "example.toml"

MINIMAL_TOML = """
[service]
ingest = ["tcp://*:5555"]
publish = "tcp://*:5556"
control = "tcp://*:5557"

[[model]]
name = "lidar"
topic = "points/lidar"
dim = 3
components = 8
"""


def minimal() -> dict[str, Any]:
    return tomllib.loads(MINIMAL_TOML)


def test_minimal_config_has_protocol_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL_TOML)
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.path == str(path)

    svc = cfg.service
    assert svc.ingest == ("tcp://*:5555",)
    assert svc.connect == ()
    assert svc.publish == "tcp://*:5556"
    assert svc.control == "tcp://*:5557"
    assert svc.log_level == "info"
    assert svc.sockets == SocketOptions(
        linger_ms=1000,
        rcvhwm=1000,
        sndhwm=1000,
        maxmsgsize=16_777_216,
        heartbeat_ivl_ms=1000,
        heartbeat_timeout_ms=3000,
        heartbeat_ttl_ms=3000,
        handshake_ivl_ms=5000,
        reconnect_ivl_ms=100,
        reconnect_ivl_max_ms=5000,
    )
    # A 300k-point f8 LiDAR scan must fit in one message.
    assert svc.sockets.maxmsgsize > 300_000 * 3 * 8 + 1024

    (m,) = cfg.models
    expected = {
        # PROTOCOL.md section 4
        "name": "lidar",
        "topic": "points/lidar",
        "dim": 3,
        "components": 8,
        "covariance_type": "full",
        "seed": 0,
        "checkpoint": "",
        "checkpoint_every_s": 5.0,
        "publish_every_s": 0.1,
        "refit_every_s": 60.0,
        "window_points": 200000,
        "retain": "reservoir",
        # extensions
        "reg_covar": 1e-6,
        "step_decay": 1.0,  # the estimator's defaults: every point weighs the same
        "step_offset": 0.0,
        "step_constant": None,  # the decaying step (TOML: 0)
        "max_points_per_message": 1_000_000,
        "max_backlog_points": 4_194_304,
        "max_abs_coordinate": 1e15,
        "min_range": 0.0,  # extension: no range limit
        "max_range": 0.0,
        "axes": (),  # extension: unnamed
        "checkpoint_generations": 2,
        "effort": 1.0,  # extension: the estimator's defaults
        "moves": True,
        "sample_points": 0,  # extension: no sample of the points in the updates
        "overload_budget_s": 0.0,  # extension: never thin (a burst is absorbed whole)
    }
    assert dataclasses.asdict(m) == expected
    for key in ("checkpoint_every_s", "publish_every_s", "refit_every_s", "reg_covar"):
        assert type(getattr(m, key)) is float


def test_dataclasses_are_frozen() -> None:
    cfg = parse_config(minimal())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.models[0].dim = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.service.publish = "tcp://*:1"  # type: ignore[misc]
    assert isinstance(cfg.service, ServiceConfig)
    assert isinstance(cfg.models[0], ModelConfig)


def test_example_config_loads_and_sets_every_key() -> None:
    cfg = load_config(EXAMPLE)
    assert [m.name for m in cfg.models] == ["lidar", "imu"]
    lidar, imu = cfg.models
    assert (lidar.topic, lidar.dim, lidar.components) == ("points/lidar", 3, 16)
    assert (imu.topic, imu.dim, imu.components, imu.covariance_type) == ("points/imu", 6, 4, "diag")
    assert cfg.service.publish.startswith("tcp://127.0.0.1:")

    raw = tomllib.loads(EXAMPLE.read_text())
    # Every key, PROTOCOL's and the extensions', is written out in the example.
    # [service.curve] needs real key files: it lives in configs/secure.toml instead.
    assert set(raw["service"]) == {f.name for f in dataclasses.fields(ServiceConfig)} - {"curve"}
    assert set(raw["service"]["sockets"]) == {f.name for f in dataclasses.fields(SocketOptions)}
    for table in raw["model"]:
        assert set(table) == {f.name for f in dataclasses.fields(ModelConfig)}


def test_connect_only_and_explicit_values() -> None:
    data = minimal()
    del data["service"]["ingest"]
    data["service"]["connect"] = ["tcp://10.0.0.2:6000", "ipc:///tmp/pts"]
    data["service"]["sockets"] = {"maxmsgsize": -1, "linger_ms": 0}
    data["model"][0].update(seed=7, refit_every_s=0, step_constant=0.05, step_decay=1)
    cfg = parse_config(data)
    assert cfg.service.connect == ("tcp://10.0.0.2:6000", "ipc:///tmp/pts")
    # PROTOCOL section 4 taken literally: a left-out `ingest` keeps its default even when
    # `connect` is given; `ingest = []` binds nothing (next test).
    assert cfg.service.ingest == ("tcp://*:5555",)
    assert cfg.service.sockets.maxmsgsize == -1
    assert cfg.service.sockets.linger_ms == 0
    m = cfg.models[0]
    assert (m.seed, m.refit_every_s, m.step_constant, m.step_decay) == (7, 0.0, 0.05, 1.0)
    assert type(m.refit_every_s) is float and type(m.step_decay) is float


def test_explicit_empty_ingest_with_connect_binds_nothing() -> None:
    data = minimal()
    data["service"]["ingest"] = []
    data["service"]["connect"] = ["inproc://points"]
    assert parse_config(data).service.ingest == ()


@pytest.mark.parametrize("value, expected", [(0, None), (0.0, None), (0.05, 0.05), (1.0, 1.0),
                                             (1, 1.0)])
def test_step_constant_zero_is_the_decaying_step_and_one_is_allowed(value, expected) -> None:
    data = minimal()
    data["model"][0]["step_constant"] = value
    assert parse_config(data).models[0].step_constant == expected


def test_step_constant_reaches_the_estimator_with_the_library_meaning() -> None:
    from streamgmm.daemon.model import ModelRuntime

    data = minimal()
    for value, expected in ((0, None), (0.25, 0.25)):
        data["model"][0]["step_constant"] = value
        runtime = ModelRuntime(parse_config(data).models[0])
        assert runtime.estimator.step_constant == expected


def test_defaults_come_from_the_dataclasses_and_every_field_has_a_checker() -> None:
    from streamgmm.daemon import config as cfg

    tables = [(cfg.SocketOptions, cfg._SOCKET_FIELDS), (cfg.CurveConfig, cfg._CURVE_FIELDS),
              (cfg.ModelConfig, cfg._MODEL_FIELDS),
              (cfg.ServiceConfig, {**cfg._SERVICE_FIELDS, "sockets": None, "curve": None})]
    for cls, checkers in tables:
        assert set(checkers) == {f.name for f in dataclasses.fields(cls)}, cls
    # A left-out key gets the dataclass default, whatever it is.
    model = parse_config(minimal()).models[0]
    for f in dataclasses.fields(cfg.ModelConfig):
        if f.name not in minimal()["model"][0]:
            assert getattr(model, f.name) == f.default, f.name


def test_shared_keys_follow_the_estimator_rules() -> None:
    from streamgmm.core.constraints import PARAMETER_CONSTRAINTS, is_valid

    shared = {"components": "n_components", "step_decay": "step_decay",
              "step_offset": "step_offset", "window_points": "retain_size"}
    for key, param in shared.items():
        for value in (-1, 0, 1, 2, 0.5, 0.75, 1.0, 1.5, 3.0):
            data = minimal()
            data["model"][0][key] = value
            if key == "window_points":
                data["model"][0]["components"] = 1
            try:
                parse_config(data)
                accepted = True
            except ConfigError as err:
                assert err.key == f"model[0].{key}"
                accepted = False
            assert accepted == is_valid(value, PARAMETER_CONSTRAINTS[param]), (key, value)


def test_config_error_is_a_picklable_value_error() -> None:
    err = ConfigError("model[0].dim", "must be >= 1 (got 0)")
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert (again.key, str(again)) == (err.key, str(err))


# ---------------------------------------------------------------------------------- bad configs


def _set(path: tuple[Any, ...], value: Any):
    def edit(data: dict[str, Any]) -> None:
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
        node[path[-1]] = value

    return edit


def _del(path: tuple[Any, ...]):
    def edit(data: dict[str, Any]) -> None:
        node = data
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return edit


def _second_model(**changes: Any):
    def edit(data: dict[str, Any]) -> None:
        extra = copy.deepcopy(data["model"][0])
        extra.update(changes)
        data["model"].append(extra)

    return edit


def _neither_ingest_nor_connect(data: dict[str, Any]) -> None:
    del data["service"]["ingest"]


def _both_empty(data: dict[str, Any]) -> None:
    data["service"]["ingest"] = []
    data["service"]["connect"] = []


M0 = ("model", 0)
SV = ("service",)
SO = ("service", "sockets")
BAD = [
    # unknown keys at every level
    ("unknown-top", _set(("servce",), {}), "servce", "unknown key"),
    ("unknown-service", _set((*SV, "bind"), "x"), "service.bind", "unknown key"),
    ("unknown-sockets", _set((*SO, "hwm"), 5), "service.sockets.hwm", "unknown"),
    ("unknown-model", _set((*M0, "componets"), 8), "model[0].componets", "did you mean"),
    ("unknown-model-1", _second_model(name="b", colour=1), "model[1].colour", "unknown key"),
    # wrong types
    ("dim-str", _set((*M0, "dim"), "three"), "model[0].dim", "expected an integer (got 'three')"),
    ("dim-bool", _set((*M0, "dim"), True), "model[0].dim", "expected an integer"),
    ("components-float", _set((*M0, "components"), 8.0), "model[0].components", "integer"),
    ("seed-bool", _set((*M0, "seed"), False), "model[0].seed", "expected an integer"),
    ("publish-every-bool", _set((*M0, "publish_every_s"), True), "model[0].publish_every_s", ""),
    ("reg-covar-str", _set((*M0, "reg_covar"), "1e-6"), "model[0].reg_covar", "expected a number"),
    ("name-int", _set((*M0, "name"), 5), "model[0].name", "expected a string"),
    ("topic-list", _set((*M0, "topic"), ["a"]), "model[0].topic", "expected a string"),
    ("checkpoint-int", _set((*M0, "checkpoint"), 0), "model[0].checkpoint", "string"),
    ("ingest-str", _set((*SV, "ingest"), "tcp://*:5555"), "service.ingest", "list"),
    ("ingest-item-int", _set((*SV, "ingest"), [5555]), "service.ingest[0]", "endpoint"),
    ("publish-list", _set((*SV, "publish"), ["tcp://*:1"]), "service.publish", "endpoint"),
    ("linger-float", _set((*SO, "linger_ms"), 1.5), "service.sockets.linger_ms", ""),
    ("sockets-not-table", _set((*SV, "sockets"), 3), "service.sockets", "expected a table"),
    ("service-not-table", _set(("service",), "x"), "service", "expected a table"),
    ("model-not-array", _set(("model",), {"name": "x"}), "model", "array of tables"),
    ("log-level-bad", _set((*SV, "log_level"), "verbose"), "service.log_level", "one of"),
    # impossible values
    ("components-0", _set((*M0, "components"), 0), "model[0].components", "must be >= 1 (got 0)"),
    ("dim-neg", _set((*M0, "dim"), -1), "model[0].dim", "must be >= 1 (got -1)"),
    ("seed-neg", _set((*M0, "seed"), -1), "model[0].seed", ">= 0"),
    ("cov-type", _set((*M0, "covariance_type"), "fulll"), "model[0].covariance_type", "one of"),
    ("retain", _set((*M0, "retain"), "latest"), "model[0].retain", "one of"),
    ("step-decay-0.5", _set((*M0, "step_decay"), 0.5), "model[0].step_decay", "> 0.5"),
    ("axes-count", _set((*M0, "axes"), ["a", "b"]), "model[0].axes", "names 2 axes, dim is 3"),
    ("axes-str", _set((*M0, "axes"), "xyz"), "model[0].axes", "list of non-empty names"),
    ("port-wraps", _set((*SV, "publish"), "tcp://*:55555555"), "service.publish", "1 to 65535"),
    ("port-missing", _set((*SV, "control"), "tcp://127.0.0.1"), "service.control", "port"),
    ("min-range-neg", _set((*M0, "min_range"), -1.0), "model[0].min_range", ">= 0.0"),
    ("max-range-str", _set((*M0, "max_range"), "50"), "model[0].max_range", "a number"),
    ("max-range-inf", _set((*M0, "max_range"), float("inf")), "model[0].max_range", "finite"),
    ("step-decay-1.2", _set((*M0, "step_decay"), 1.2), "model[0].step_decay", "<= 1.0"),
    ("step-constant-1.5", _set((*M0, "step_constant"), 1.5), "model[0].step_constant", "<= 1.0"),
    ("step-constant-neg", _set((*M0, "step_constant"), -0.1), "model[0].step_constant", "or 0"),
    ("step-offset-neg", _set((*M0, "step_offset"), -1), "model[0].step_offset", ">= 0"),
    ("publish-every-neg", _set((*M0, "publish_every_s"), -0.1), "model[0].publish_every_s", ">="),
    ("refit-nan", _set((*M0, "refit_every_s"), math.nan), "model[0].refit_every_s", "finite"),
    ("ckpt-inf", _set((*M0, "checkpoint_every_s"), math.inf), "model[0].checkpoint_every_s", ""),
    ("reg-covar-0", _set((*M0, "reg_covar"), 0), "model[0].reg_covar", "> 0"),
    ("window-lt-k", _set((*M0, "window_points"), 4), "model[0].window_points", "components"),
    ("max-pts-0", _set((*M0, "max_points_per_message"), 0), "model[0].max_points_per_message", ""),
    ("backlog-0", _set((*M0, "max_backlog_points"), 0), "model[0].max_backlog_points", ""),
    ("gens-0", _set((*M0, "checkpoint_generations"), 0), "model[0].checkpoint_generations", ""),
    ("name-empty", _set((*M0, "name"), ""), "model[0].name", "non-empty"),
    ("maxmsgsize-100", _set((*SO, "maxmsgsize"), 100), "service.sockets.maxmsgsize", "or -1"),
    ("hwm-neg", _set((*SO, "sndhwm"), -1), "service.sockets.sndhwm", ">= 0"),
    ("hwm-huge", _set((*SO, "rcvhwm"), 2**40), "service.sockets.rcvhwm", "<="),
    ("duplicate-name", _second_model(), "model[1].name", "duplicate model name 'lidar'"),
    ("bad-scheme", _set((*SV, "publish"), "http://x:1"), "service.publish", "tcp://"),
    ("bare-scheme", _set((*SV, "control"), "tcp://"), "service.control", "endpoint"),
    ("scheme-ingest", _set((*SV, "ingest"), ["tcp://*:1", "udp://*:2"]), "service.ingest[1]", ""),
    ("bad-scheme-connect", _set((*SV, "connect"), ["localhost:5"]), "service.connect[0]", ""),
    ("publish-eq-control", _set((*SV, "control"), "tcp://*:5556"), "service.control", "same"),
    ("ingest-eq-publish", _set((*SV, "ingest"), ["tcp://*:5556"]), "service.ingest[0]", "same"),
    # missing required keys
    ("missing-publish", _del((*SV, "publish")), "service.publish", "required key is missing"),
    ("missing-control", _del((*SV, "control")), "service.control", "required key is missing"),
    ("missing-topic", _del((*M0, "topic")), "model[0].topic", "required key is missing"),
    ("missing-name", _del((*M0, "name")), "model[0].name", "required key is missing"),
    ("missing-dim", _del((*M0, "dim")), "model[0].dim", "required key is missing"),
    ("missing-components", _del((*M0, "components")), "model[0].components", "required"),
    ("neither-ingest-nor-connect", _neither_ingest_nor_connect, "service.ingest", "at least one"),
    ("both-empty", _both_empty, "service.ingest", "empty"),
    ("missing-service", _del(("service",)), "service", "missing"),
    ("missing-model", _del(("model",)), "model", "at least one"),
    ("empty-model", _set(("model",), []), "model", "at least one"),
]


@pytest.mark.parametrize(
    ("edit", "key", "fragment"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_bad_config_names_the_key(edit, key: str, fragment: str) -> None:
    data = minimal()
    edit(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    err = info.value
    assert err.key == key
    text = str(err)
    assert "\n" not in text
    assert text.startswith(f"{key}: ")
    assert fragment in text


def test_unknown_key_message_matches_contract() -> None:
    data = minimal()
    data["model"][0]["componets"] = 8
    with pytest.raises(ConfigError, match=r"^model\[0\]\.componets: unknown key"):
        parse_config(data)


def test_wrong_type_message_matches_contract() -> None:
    data = minimal()
    data["model"][0]["dim"] = "three"
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value) == "model[0].dim: expected an integer (got 'three')"


FILE_ERRORS = [
    ("syntax", "[service\npublish = 1\n"),
    ("dup-key", '[service]\npublish = "tcp://*:1"\npublish = "tcp://*:2"\n'),
    ("bad-value", "[service]\npublish = tcp://x\n"),
    ("not-utf8", b'[service]\npublish = "\xff\xfe"\n'),
]


@pytest.mark.parametrize("content", [c[1] for c in FILE_ERRORS], ids=[c[0] for c in FILE_ERRORS])
def test_unparseable_file(tmp_path: Path, content: str | bytes) -> None:
    path = tmp_path / "bad.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "<file>"
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "<file>"
    assert "\n" not in str(info.value)
    assert "nope.toml" in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.key == "<file>"


def test_estimator_spellings_are_synonyms_of_the_protocol_keys():
    base = {"service": {"ingest": ["tcp://*:5555"], "publish": "tcp://*:5556",
                        "control": "tcp://*:5557"}}
    model = {"name": "m", "topic": "t", "dim": 3}
    cfg = parse_config({**base, "model": [{**model, "n_components": 4, "retain_size": 500}]})
    assert (cfg.models[0].components, cfg.models[0].window_points) == (4, 500)
    with pytest.raises(ConfigError, match="model\\[0\\].n_components: give 'n_components' or"):
        parse_config({**base, "model": [{**model, "n_components": 4, "components": 4}]})
    with pytest.raises(ConfigError, match="model\\[0\\].n_components: must be >= 1"):
        parse_config({**base, "model": [{**model, "n_components": 0}]})


@pytest.mark.parametrize("key", ["relocations", "relocate_budget", "move_budget"])
def test_a_removed_key_says_what_replaced_it(key):
    base = {"service": {"ingest": ["tcp://*:5555"], "publish": "tcp://*:5556",
                        "control": "tcp://*:5557"}}
    model = {"name": "m", "topic": "t", "dim": 3, "components": 2, key: 1}
    with pytest.raises(ConfigError, match=f"model\\[0\\].{key}: no longer a key: .*effort"):
        parse_config({**base, "model": [model]})


@pytest.mark.parametrize("key, value, words", [
    ("effort", -1.0, "effort"), ("effort", "high", "number"), ("moves", 1, "true or false"),
])
def test_effort_and_moves_are_checked(key, value, words):
    base = {"service": {"ingest": ["tcp://*:5555"], "publish": "tcp://*:5556",
                        "control": "tcp://*:5557"}}
    model = {"name": "m", "topic": "t", "dim": 3, "components": 2, key: value}
    with pytest.raises(ConfigError, match=words):
        parse_config({**base, "model": [model]})


def test_range_limits_need_max_above_min() -> None:
    data = minimal()
    data["model"][0].update(min_range=2.0, max_range=1.5)
    with pytest.raises(ConfigError, match=r"model\[0\]\.max_range: must be above min_range"):
        parse_config(data)
    data["model"][0].update(min_range=2.0, max_range=0)  # 0: no upper limit
    m = parse_config(data).models[0]
    assert (m.min_range, m.max_range) == (2.0, 0.0)


@pytest.mark.parametrize("config_key, param, value", [
    ("components", "n_components", 0), ("n_components", "n_components", 0),
    ("window_points", "retain_size", 0), ("effort", "effort", -1.0),
    ("effort", "effort", 65.0), ("step_decay", "step_decay", 0.3),
    ("step_offset", "step_offset", -1.0), ("retain", "retain", "all"),
    ("covariance_type", "covariance_type", "round"),
])
def test_the_config_and_the_estimator_refuse_alike(config_key, param, value):
    """One declaration per rule (core.constraints): the same values are refused by the
    config and by GaussianMixture, and both messages say what is accepted in the same words."""
    from streamgmm import GaussianMixture
    from streamgmm.core.constraints import PARAMETER_CONSTRAINTS

    base = {"service": {"ingest": ["tcp://*:5555"], "publish": "tcp://*:5556",
                        "control": "tcp://*:5557"}}
    model = {"name": "m", "topic": "t", "dim": 2, "components": 2, config_key: value}
    if config_key == "n_components":
        del model["components"]
    with pytest.raises(ConfigError) as from_config:
        parse_config({**base, "model": [model]})
    kwargs = {"n_components": 2, param: value}
    with pytest.raises(ValueError) as from_estimator:
        GaussianMixture(**kwargs).partial_fit([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [3.0, 1.0]])
    (rule,) = [c for c in PARAMETER_CONSTRAINTS[param] if c is not None]
    words = rule.bounds() if hasattr(rule, "bounds") else repr(rule.values[0])
    assert words in str(from_config.value) and words in str(from_estimator.value)
