"""The demo agent: seeded scenarios recorded through the SDK (``python -m tracefoundry_sdk.demo``).

    from tracefoundry_sdk.demo import run_demo
    traces = run_demo(count=12, seed=7)  # through the SDK as configured

See ``agent`` for the scenarios and ``__main__`` for the command line.
"""

from tracefoundry_sdk.demo.agent import (
    RUN_KIND,
    SCENARIOS,
    DemoTrace,
    idempotency_key,
    run_demo,
    run_trace,
    scenario_for,
)
from tracefoundry_sdk.demo.ids import SeededIdGenerator, seeded_ids

__all__ = ["RUN_KIND", "SCENARIOS", "DemoTrace", "SeededIdGenerator", "idempotency_key",
           "run_demo", "run_trace", "scenario_for", "seeded_ids"]
