"""The demo agent and its seeded scenarios, recorded only through the SDK's public helpers.

One trace per call of ``run_trace``: a run (``trace_agent_run``) whose agent loop asks the
"model" (``model.plan``, inside ``llm_call``) for the next step and runs the tools (``world``,
inside ``tool_call``) until the model answers. The scenarios differ in the task and in the
faults injected:

=============== ===========================================================================
happy_path      weather, docs or SQL questions; every call succeeds; the run succeeds
slow_tool       a weekly report whose warehouse queries and doc search are slow (tens of ms,
                a warning logged each time); the run succeeds
retry_storm     every model call is retried 2-5 times (429/503/connection resets) and some
                tool calls once; the run succeeds
llm_error       the model refuses a prompt over its context window; on even occurrences the
                agent records the error and recovers with a truncated prompt and a fallback
                model (the run succeeds), on odd ones the fallback is down too (the run fails)
timeout         a warehouse query times out (``call.timeout``), the agent narrows it, it times
                out again; the run fails with the ``TimeoutError``
patch_and_test  read the file, propose a patch, run the tests, fail, patch again, pass (2 or 3
                rounds, with the patch and test events); the run succeeds
=============== ===========================================================================

Ids are seeded (``ids.seeded_ids``) and each run has an idempotency key made of the seed, the
trace's index and its scenario, so the same seed gives the same traces and sending them again
adds no run.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import tracefoundry_sdk as tf
from tracefoundry_sdk.demo import model as m
from tracefoundry_sdk.demo.ids import seeded_ids
from tracefoundry_sdk.demo.world import World, render

SCENARIOS = ("happy_path", "slow_tool", "retry_storm", "llm_error", "timeout", "patch_and_test")
TASK_KINDS = {"happy_path": ("weather", "docs", "sql"), "slow_tool": ("report",),
              "retry_storm": ("docs", "sql", "weather"), "llm_error": ("incident",),
              "timeout": ("reconcile",), "patch_and_test": ("fix",)}
RUN_KIND = "agent.session"
MAX_STEPS = 12
CONTEXT_WINDOW = 8_192  # the llm_error scenario's model refuses prompts longer than this
_RETRY_REASONS = ("429 Too Many Requests: rate_limit_exceeded (tokens per minute)",
                  "503 Service Unavailable: the model is overloaded",
                  "connection reset by peer", "429 Too Many Requests: requests per minute")


class ModelError(Exception):
    """The model's API refused or failed a call."""


class ContextWindowExceeded(ModelError):
    pass


class UpstreamUnavailable(ModelError):
    pass


class ToolTimeout(TimeoutError):
    """A tool did not answer within its deadline."""


@dataclass
class DemoTrace:
    """What one demo trace recorded."""

    index: int
    scenario: str
    idempotency_key: str
    run_id: str | None
    trace_id: str | None
    outcome: str  # succeeded | failed (as the scenario says)
    error: str | None = None
    resent: bool = False  # sent before (same seed and index): the run was already recorded


def idempotency_key(seed: int, index: int, scenario: str) -> str:
    return f"tf-demo-agent:{seed}:{index}:{scenario}"


def scenario_for(index: int, scenario: str | None) -> tuple[str, int]:
    """The scenario of trace ``index`` (round-robin unless one is forced) and which occurrence
    of that scenario it is (0, 1, …)."""
    if scenario is not None:
        return scenario, index
    return SCENARIOS[index % len(SCENARIOS)], index // len(SCENARIOS)


class DemoAgent:
    def __init__(self, *, scenario: str, seed: int, index: int, occurrence: int) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
        self.scenario = scenario
        self.occurrence = occurrence
        key = f"{seed}:{index}:{scenario}"
        self.rng = random.Random(f"tracefoundry-demo:{key}")
        self.world = World(key)
        self.model = self.rng.choice(m.MODELS)
        self.fallback = self.rng.choice([x for x in m.MODELS if x[1] != self.model[1]])
        self.temperature = self.rng.choice([0.0, 0.1, 0.2, 0.3, 0.7])
        self.task = m.make_task(self.rng.choice(TASK_KINDS[scenario]), self.rng, self.world)
        self.name = f"demo {scenario} #{index}: {self.task.text}"[:200]
        self.input = {"task": self.task.text, "scenario": scenario, "seed": seed,
                      "index": index, "repo": self.world.repo}
        self.tool_failures = 0

    # --- the loop ---------------------------------------------------------------------------

    def run(self, run: tf.AgentRun) -> dict:
        request, provider, _ = self.model
        run.note(f"task: {self.task.kind}; model {request} ({provider}), temperature "
                 f"{self.temperature}")
        messages: list[dict] = [{"role": "system", "content": m.system_prompt(self.rng)},
                                {"role": "user", "content": self.task.text}]
        observations: list[m.Observation] = []
        for step in range(MAX_STEPS):
            completion = self.think(run, messages, observations)
            if completion.tool is None:
                return {"answer": completion.text, "steps": step + 1,
                        "tool_calls": [o.tool for o in observations], "model": self.model[0]}
            messages.append({"role": "assistant", "content": completion.text})
            observation = self.act(run, completion.tool, completion.args or {})
            observations.append(observation)
            messages.append({"role": "tool", "name": observation.tool,
                             "content": observation.error or render(observation.result)})
            run.progress(step + 1, None, f"{observation.tool} "
                         f"{'failed' if observation.error else 'done'}")
        raise RuntimeError(f"no answer after {MAX_STEPS} steps")

    def think(self, run: tf.AgentRun, messages: list[dict],
              observations: list[m.Observation]) -> m.Completion:
        try:
            return self._llm(messages, observations, self.model)
        except ContextWindowExceeded as exc:
            if self.occurrence % 2:  # odd occurrences: the fallback fails too, the run fails
                run.error(str(exc), model=self.model[0], recovery="fallback model")
                return self._llm(messages, observations, self.fallback, down=True)
            run.error(str(exc), model=self.model[0], recovery="truncated prompt")
            for message in messages:
                if message["role"] == "tool" and len(message["content"]) > 4000:
                    message["content"] = message["content"][:4000] + "\n…[truncated]"
            self.model = self.fallback
            return self._llm(messages, observations, self.fallback)

    def _llm(self, messages: list[dict], observations: list[m.Observation],
             model: tuple[str, str, str], *, down: bool = False) -> m.Completion:
        request, provider, response = model
        prompt = [dict(message) for message in messages]
        prompt_tokens = m.count_tokens(render(prompt))
        params = {"temperature": self.temperature, "max_tokens": self.rng.choice([512, 1024])}
        with tf.llm_call(request, provider=provider, prompt=prompt,
                         request_params=params) as call:
            self._pause(2, 6)
            if self.scenario == "retry_storm":
                for attempt in range(1, self.rng.randint(2, 5) + 1):
                    call.retry(attempt, reason=self.rng.choice(_RETRY_REASONS))
                    self._pause(1, 3)
            if down:
                raise UpstreamUnavailable(f"503 from {provider}: {request} is unavailable, "
                                          "try again later")
            if self.scenario == "llm_error" and prompt_tokens > CONTEXT_WINDOW:
                raise ContextWindowExceeded(
                    f"{request}: the prompt has {prompt_tokens} tokens, over the model's "
                    f"{CONTEXT_WINDOW}-token context window")
            completion = m.plan(self.task, observations, self.rng)
            call.record_response(text=completion.text, response_model=response,
                                 input_tokens=prompt_tokens,
                                 output_tokens=m.count_tokens(completion.text),
                                 finish_reasons=[completion.finish_reason])
        return completion

    def act(self, run: tf.AgentRun, tool: str, args: dict) -> m.Observation:
        if tool == "apply_patch":
            run.patch_proposed(args["diff"], files=args["files"])
        elif tool == "run_tests":
            run.test_started(args["command"])
        try:
            result = self._tool(run, tool, args)
        except ToolTimeout as exc:
            self.tool_failures += 1
            if self.tool_failures > 1:
                raise  # the second timeout in a row: give up, the run fails
            run.log(f"{tool} timed out ({exc}); narrowing the query", level="warn",
                    stream="stderr")
            return m.Observation(tool, args, error=f"error: {exc}")
        if tool == "apply_patch":
            run.patch_applied(result["files"])
        elif tool == "run_tests":
            run.test_result(result["passed"], result["failed"], result["skipped"],
                            output=result["output"])
        return m.Observation(tool, args, result)

    def _tool(self, run: tf.AgentRun, tool: str, args: dict) -> Any:
        with tf.tool_call(tool, args=args) as call:
            slow = self.scenario == "slow_tool" and tool in ("sql_query", "search_docs")
            started = time.perf_counter()
            if slow:
                self._pause(25, 60)
            else:
                self._pause(1, 3)
            if self.scenario == "retry_storm" and self.rng.random() < 0.5:
                call.retry(1, reason="502 Bad Gateway from the tool server")
                self._pause(1, 2)
            if self.scenario == "timeout" and tool == "sql_query":
                after = self.rng.choice([10.0, 15.0, 30.0])
                call.timeout(after)
                raise ToolTimeout(f"{tool} did not answer within {after:g} s")
            result = self.world.call(tool, args)
            call.record_result(result)
        if slow:
            took = (time.perf_counter() - started) * 1000
            run.log(f"{tool} took {took:.0f} ms, over its 20 ms budget", level="warn")
        return result

    def _pause(self, low_ms: int, high_ms: int) -> None:
        """Work that takes a little time: a few ms, drawn from the trace's random stream."""
        time.sleep(self.rng.randint(low_ms, high_ms) / 1000)


def run_trace(*, seed: int, index: int, scenario: str | None = None,
              kind: str = RUN_KIND) -> DemoTrace:
    """Record demo trace ``index`` of ``seed`` (and its run) through the SDK as configured."""
    name, occurrence = scenario_for(index, scenario)
    agent = DemoAgent(scenario=name, seed=seed, index=index, occurrence=occurrence)
    key = idempotency_key(seed, index, name)
    error = None
    with seeded_ids(key):
        try:
            with tf.trace_agent_run(kind, name=agent.name, input=agent.input,
                                    idempotency_key=key) as run:
                run.set_output(agent.run(run))
        except (ModelError, ToolTimeout) as exc:
            error = f"{type(exc).__name__}: {exc}"
    return DemoTrace(index=index, scenario=name, idempotency_key=key, run_id=run.run_id,
                     trace_id=run.trace_id, outcome="failed" if error else "succeeded",
                     error=error, resent=run.already_finished)


def run_demo(*, count: int, seed: int, scenario: str | None = None, kind: str = RUN_KIND,
             on_trace: Callable[[DemoTrace], None] | None = None) -> list[DemoTrace]:
    """Record ``count`` demo traces, round-robin over the scenarios unless one is given."""
    traces = []
    for index in range(count):
        traces.append(run_trace(seed=seed, index=index, scenario=scenario, kind=kind))
        if on_trace is not None:
            on_trace(traces[-1])
    return traces
