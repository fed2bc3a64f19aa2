"""The streamgmm daemon: ZeroMQ points in, online EM, mixture updates out.

One file per step of the pipeline, socket -> codec -> model -> publisher:

- :mod:`~streamgmm.daemon.config`: the TOML file parsed into frozen dataclasses
  (to add a config key: a field on the dataclass plus its rule there).
- :mod:`~streamgmm.daemon.transport`: the ZeroMQ sockets (bytes in, bytes out), options, CURVE.
- :mod:`~streamgmm.daemon.accounting`: message counters and per-source ``seq`` tracking.
- :mod:`~streamgmm.daemon.model`: one model's runtime (absorb, refit, payloads).
- :mod:`~streamgmm.daemon.checkpoint`: crash-safe save and load of a model's state.
- :mod:`~streamgmm.daemon.metrics`: Prometheus ``/metrics`` and ``/healthz``.
- :mod:`~streamgmm.daemon.service`: start-up, the poll loop, control ops (a dispatch
  table: to add a control op, a handler there), shut-down, :func:`run_daemon`.

The library side (:mod:`streamgmm.estimator`, :mod:`streamgmm.core`, :mod:`streamgmm.codec`,
:mod:`streamgmm.client`) never imports this package.
"""

from streamgmm.daemon.config import Config, ConfigError, ModelConfig, load_config, parse_config
from streamgmm.daemon.service import (
    EXIT_CONFIG,
    EXIT_INTERNAL,
    EXIT_OK,
    Service,
    configure_logging,
    run_daemon,
)

__all__ = [
    "EXIT_CONFIG",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "Config",
    "ConfigError",
    "ModelConfig",
    "Service",
    "configure_logging",
    "load_config",
    "parse_config",
    "run_daemon",
]
