"""A few demo runs with steps and events, written through the services like real traffic."""

from __future__ import annotations

from runs import services
from runs.models import Project, Run


def _steps(run_id: str, names: list[str]) -> list[str]:
    return [services.step_create(run_id=run_id, name=n, node_ref=f"agent.{n}").id for n in names]


def demo_runs_create(*, project: Project) -> int:
    """Create the demo runs once (idempotency keys make a second call a no-op)."""
    if Run.objects.filter(idempotency_key__startswith="demo-").exists():
        return 0
    # A succeeded agent session with LLM and tool calls and logs.
    run, _ = services.run_enqueue(
        project=project, kind="agent.session", name="Fix failing test in parser",
        input={"task": "make tests/test_parser.py pass", "repo": "acme/parser"},
        idempotency_key="demo-1",
    )
    services.run_start(run_id=run.id, worker_id="demo-worker-1")
    plan, edit, check = _steps(run.id, ["plan", "edit", "test"])
    for step_id, events in (
        (plan, [
            {"type": "llm_request", "payload": {"model": "gpt-4o", "prompt": "Plan a fix for …"}},
            {"type": "llm_response", "payload": {"text": "Open parser.py, handle empty input.",
                                                 "input_tokens": 812, "output_tokens": 64}},
        ]),
        (edit, [
            {"type": "tool_call", "correlation_id": "call-1",
             "payload": {"tool": "read_file", "args": {"path": "parser.py"}}},
            {"type": "tool_result", "correlation_id": "call-1",
             "payload": {"tool": "read_file", "result": "def parse(s): …"}},
            {"type": "patch_proposed", "payload": {"diff": "--- a/parser.py\n+++ b/parser.py\n"}},
            {"type": "patch_applied", "payload": {"files": ["parser.py"]}},
        ]),
        (check, [
            {"type": "test_started", "payload": {"command": "pytest -q"}},
            {"type": "log", "payload": {"stream": "stdout", "text": "..........  [100%]"}},
            {"type": "test_result", "payload": {"passed": 10, "failed": 0}},
        ]),
    ):
        services.step_transition(run_id=run.id, step_id=step_id, action="start")
        services.event_append_batch(run_id=run.id,
                                    events=[dict(e, step_id=step_id) for e in events])
        services.step_transition(run_id=run.id, step_id=step_id, action="succeed")
    services.run_succeed(run_id=run.id, output={"patch": "parser.py", "tests": "10 passed"})

    # A run that failed once, was retried, and failed for good.
    run, _ = services.run_enqueue(
        project=project, kind="script.pull", name="Pull upstream releases",
        input={"source": "https://example.com/releases"}, idempotency_key="demo-2",
        max_attempts=2,
    )
    for attempt in (1, 2):
        services.run_start(run_id=run.id, worker_id="demo-worker-2")
        services.event_append_batch(run_id=run.id, events=[
            {"type": "log", "payload": {"stream": "stderr", "text": f"attempt {attempt}: timeout"}},
        ])
        services.run_fail(run_id=run.id, error="TimeoutError: upstream did not answer in 30s",
                          retryable=True)

    # A run still in progress, with a progress event.
    run, _ = services.run_enqueue(
        project=project, kind="agent.session", name="Summarise open issues",
        input={"repo": "acme/parser"}, idempotency_key="demo-3",
    )
    services.run_start(run_id=run.id, worker_id="demo-worker-1")
    (fetch,) = _steps(run.id, ["fetch"])
    services.step_transition(run_id=run.id, step_id=fetch, action="start")
    services.event_append_batch(run_id=run.id, events=[
        {"type": "progress", "payload": {"completed": 3, "total": 10, "message": "issues read"}},
        {"type": "note", "payload": {"text": "Skipping closed issues."}},
    ])

    # One queued, one canceled. No built-in job serves script.pull (register one with
    # @job("script.pull")): the run says it waits for a worker of that kind.
    services.run_enqueue(project=project, kind="script.pull", name="Nightly sync",
                         input={}, idempotency_key="demo-4")
    run, _ = services.run_enqueue(project=project, kind="agent.session", name="Abandoned task",
                                  input={}, idempotency_key="demo-5")
    services.run_cancel(run_id=run.id, reason="no longer needed")
    return 5
