"""The demo agent's "model": a small rule-based planner, deterministic code instead of an LLM.

Given the task and what the tools answered so far, ``plan`` writes the next completion: a tool
call (as JSON, the way chat models return them) or the final answer. Its wording is drawn from
the trace's own random stream, so two traces never read alike, and the same seed always
writes the same words.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

from tracefoundry_sdk.demo import world as w

SYSTEM_PROMPT = """You are Foundry, a careful engineering assistant working inside a sandbox.
Answer the user's task using the tools below. Call one tool at a time, as JSON:
{"thought": "...", "tool_call": {"name": "<tool>", "arguments": {...}}}
When you have enough to answer, reply with the answer in plain text and no JSON.
Never invent tool results; say what you could not find.

Tools:
- read_file(path: str): the text of a file in the repository.
- search_docs(query: str, k: int = 3): the k best passages of the project's documentation.
- sql_query(sql: str, limit: int = 5): run a read-only query on the analytics warehouse.
- weather(city: str, days: int = 3): the forecast for a city.
- apply_patch(diff: str, files: list[str]): apply a unified diff to the working tree.
- run_tests(command: str): run the test suite and report passed/failed/skipped."""

OPENERS = ["Let me", "First I will", "I should", "Next, I'll", "To be sure, I'll", "I need to"]
MODELS = [  # (request model, provider, response model): names the price table knows
    ("gpt-4o", "openai", "gpt-4o-2024-08-06"),
    ("gpt-4o-mini", "openai", "gpt-4o-mini-2024-07-18"),
    ("gpt-4.1", "openai", "gpt-4.1-2025-04-14"),
    ("claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5-20250929"),
    ("claude-3-5-haiku", "anthropic", "claude-3-5-haiku-20241022"),
    ("gemini-2.5-flash", "gcp.gemini", "gemini-2.5-flash"),
]
PRODUCT_LINES = ["espresso machines", "trail shoes", "standing desks", "e-bikes", "headphones",
                 "air purifiers", "camping stoves", "mechanical keyboards", "smart thermostats"]
_TOKEN = re.compile(r"\w+|[^\w\s]")


def system_prompt(rng: random.Random) -> str:
    """The system prompt, with a few notes "remembered" from earlier sessions (1 to 5)."""
    notes = [f"- {rng.choice(w.REPOS)}: {w.identifier(rng)} runs every {rng.randint(2, 90)} "
             f"minutes; {rng.choice(sorted(w.TOPICS))} settings changed on 2026-"
             f"{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}."
             for _ in range(rng.randint(1, 5))]
    return SYSTEM_PROMPT + "\n\nNotes from earlier sessions:\n" + "\n".join(notes)


def count_tokens(text: str) -> int:
    """A tokenizer's count, roughly: words and punctuation marks."""
    return len(_TOKEN.findall(text))


@dataclass
class Task:
    kind: str  # weather | docs | sql | report | incident | reconcile | fix
    text: str  # what the user asked
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Observation:
    tool: str
    args: dict
    result: Any = None
    error: str | None = None  # the tool failed (e.g. timed out)


@dataclass
class Completion:
    text: str
    tool: str | None = None
    args: dict | None = None
    finish_reason: str = "stop"


def make_task(kind: str, rng: random.Random, world: w.World) -> Task:
    """A task of ``kind`` with its particulars drawn from ``rng``."""
    if kind == "weather":
        cities = rng.sample(w.CITIES, k=rng.choice([2, 2, 3]))
        days = rng.randint(2, 5)
        return Task(kind, f"I'm planning a {days}-day trip and can go to "
                    f"{', '.join(cities[:-1])} or {cities[-1]}. Compare the forecasts and "
                    "recommend one.", {"cities": cities, "days": days})
    if kind == "docs":
        topic = rng.choice(sorted(w.TOPICS))
        path = rng.choice(sorted(world.files))
        return Task(kind, f"How does {world.repo} handle {topic}? Check the docs and point me "
                    f"at the code in {path}.", {"topic": topic, "path": path})
    if kind == "sql":
        month = f"2026-{rng.randint(1, 11):02d}"
        line = rng.choice(PRODUCT_LINES)
        return Task(kind, f"Which region sold the most {line} in {month}, and by how much "
                    "over the runner-up?", {"month": month, "line": line})
    if kind == "report":
        team = rng.choice(["growth", "finance", "support", "platform", "partnerships"])
        week = rng.randint(1, 48)
        return Task(kind, f"Build the weekly revenue report for the {team} team, week {week}: "
                    "revenue by region, order counts, and the caching caveats for the numbers.",
                    {"team": team, "week": week})
    if kind == "incident":
        path = f"logs/incident-{rng.randint(1000, 9999)}.log"
        world.files[path] = rng.randint(120, 170)  # long: the prompt goes over the model's budget
        service = f"{rng.choice(w.NOUNS)}-{rng.choice(['api', 'worker', 'gateway', 'cron'])}"
        severity = rng.choice(["SEV1", "SEV2", "SEV3"])
        return Task(kind, f"The {service} service paged at {rng.randint(0, 23):02d}:"
                    f"{rng.randint(0, 59):02d} UTC (severity {severity})."
                    f" Summarise what went wrong in {path} and list the functions involved.",
                    {"path": path})
    if kind == "reconcile":
        customer = f"cus_{rng.getrandbits(40):010x}"
        quarter = f"2026-Q{rng.randint(1, 4)}"
        return Task(kind, f"Reconcile the invoices of customer {customer} for {quarter} "
                    "against the ledger.", {"customer": customer, "quarter": quarter})
    if kind == "fix":
        path = rng.choice(sorted(world.files))
        test = f"tests/test_{w.identifier(rng)}.py"
        world.tests_fixed_after = rng.choice([2, 2, 3])
        return Task(kind, f"{test} fails on main in {world.repo}. Find the bug in {path}, fix "
                    "it and make the suite pass.", {"path": path, "test": test})
    raise ValueError(f"unknown task kind {kind!r}")


def _call(rng: random.Random, thought: str, tool: str, args: dict) -> Completion:
    text = json.dumps({"thought": f"{rng.choice(OPENERS)} {thought}",
                       "tool_call": {"name": tool, "arguments": args}}, ensure_ascii=False)
    return Completion(text, tool=tool, args=args, finish_reason="tool_calls")


def _done(observations: list[Observation], tool: str) -> list[Observation]:
    return [o for o in observations if o.tool == tool and o.error is None]


def plan(task: Task, observations: list[Observation], rng: random.Random) -> Completion:
    """The next step: a tool call, or the answer."""
    return _PLANNERS[task.kind](task, observations, rng)


def _weather(task: Task, obs: list[Observation], rng: random.Random) -> Completion:
    seen = {o.args["city"] for o in _done(obs, "weather")}
    for city in task.params["cities"]:
        if city not in seen:
            return _call(rng, f"check the forecast for {city}.", "weather",
                         {"city": city, "days": task.params["days"]})
    scored = []
    for o in _done(obs, "weather"):
        days = o.result["forecast"]
        rain = sum(d["precipitation_mm"] for d in days)
        high = sum(d["high"] for d in days) / len(days)
        scored.append((rain - high / 3, o.args["city"], high, rain))
    scored.sort()
    best = scored[0]
    others = "; ".join(f"{c}: {h:.1f} °C average high, {r:.1f} mm of rain"
                       for _, c, h, r in scored[1:])
    return Completion(f"Go to {best[1]}: {best[2]:.1f} °C average high and {best[3]:.1f} mm of "
                      f"rain over {task.params['days']} days. The others — {others}.")


def _docs(task: Task, obs: list[Observation], rng: random.Random) -> Completion:
    if not _done(obs, "search_docs"):
        return _call(rng, f"search the documentation for {task.params['topic']}.",
                     "search_docs", {"query": task.params["topic"], "k": rng.randint(2, 4)})
    if not _done(obs, "read_file"):
        return _call(rng, f"read {task.params['path']} to find where this is implemented.",
                     "read_file", {"path": task.params["path"]})
    hit = _done(obs, "search_docs")[0].result[0]
    source = _done(obs, "read_file")[0].result
    functions = re.findall(r"^def (\w+)", source, flags=re.M)
    picked = rng.sample(functions, k=min(3, len(functions)))
    return Completion(f"{hit['snippet']} (source: {hit['url']}). In {task.params['path']} the "
                      f"relevant functions are {', '.join(picked)}; {len(functions)} functions "
                      "in all.")


def _sql_text(rng: random.Random, table: str, where: str, limit: int) -> str:
    metric = rng.choice(["SUM(amount_usd)", "SUM(net_usd)", "SUM(gross_usd - refunds_usd)"])
    return (f"SELECT region, {metric} AS revenue_usd, COUNT(*) AS orders FROM {table} "
            f"WHERE {where} GROUP BY region ORDER BY revenue_usd DESC LIMIT {limit}")


def _sql(task: Task, obs: list[Observation], rng: random.Random) -> Completion:
    if not _done(obs, "sql_query"):
        sql = _sql_text(rng, "analytics.orders", f"month = '{task.params['month']}' AND "
                        f"product_line = '{task.params['line']}'", 5)
        return _call(rng, "query the orders table by region.", "sql_query",
                     {"sql": sql, "limit": 5})
    rows = _done(obs, "sql_query")[0].result["rows"]
    (first, rev1, _), (second, rev2, _) = rows[0], rows[1]
    return Completion(f"{first} led {task.params['line']} in {task.params['month']} with "
                      f"${rev1:,.2f}, "
                      f"${rev1 - rev2:,.2f} ahead of {second} (${rev2:,.2f}).")


def _report(task: Task, obs: list[Observation], rng: random.Random) -> Completion:
    queries = _done(obs, "sql_query")
    week = task.params["week"]
    if len(queries) < 2:
        table = "analytics.orders" if not queries else "analytics.orders_archive"
        where = f"iso_week = {week - len(queries)} AND team = '{task.params['team']}'"
        return _call(rng, f"pull week {week - len(queries)} from {table}.", "sql_query",
                     {"sql": _sql_text(rng, table, where, 6), "limit": 6})
    if not _done(obs, "search_docs"):
        return _call(rng, "check how caching affects these numbers.", "search_docs",
                     {"query": "caching of report queries", "k": 2})
    this, last = (sum(r[1] for r in q.result["rows"]) for q in queries)
    change = (this - last) / last * 100
    caveat = _done(obs, "search_docs")[0].result[0]["snippet"]
    return Completion(f"Week {week} ({task.params['team']}): ${this:,.2f} across "
                      f"{len(queries[0].result['rows'])} regions, {change:+.1f}% on the week "
                      f"before. Caveat: {caveat}")


def _incident(task: Task, obs: list[Observation], rng: random.Random) -> Completion:
    if not _done(obs, "read_file"):
        return _call(rng, f"read {task.params['path']}.", "read_file",
                     {"path": task.params["path"]})
    functions = re.findall(r"^def (\w+)", _done(obs, "read_file")[0].result, flags=re.M)
    involved = rng.sample(functions, k=min(4, len(functions)))
    return Completion(f"The incident in {task.params['path']} started in {involved[0]}, which "
                      f"exceeded its limit and cascaded into {', '.join(involved[1:])}.")


def _reconcile(task: Task, obs: list[Observation], rng: random.Random) -> Completion:
    failed = [o for o in obs if o.tool == "sql_query" and o.error]
    window = "quarter" if not failed else f"month {len(failed)} of the quarter"
    limit = 5000 // (10 ** len(failed)) or 5
    where = (f"customer_id = '{task.params['customer']}' AND quarter = "
             f"'{task.params['quarter']}'")
    if failed:
        where += f" AND month_of_quarter = {len(failed)}"
    done = _done(obs, "sql_query")
    if not done:
        return _call(rng, f"join invoices and ledger entries for the {window}.", "sql_query",
                     {"sql": _sql_text(rng, "billing.invoices JOIN billing.ledger USING "
                                       "(invoice_id)", where, limit), "limit": limit})
    rows = done[0].result["rows"]
    return Completion(f"{len(rows)} regions reconciled for {task.params['customer']}; largest "
                      f"balance ${rows[0][1]:,.2f} in {rows[0][0]}.")


def _diff(rng: random.Random, path: str, attempt: int) -> str:
    old, new = w.identifier(rng), w.identifier(rng)
    line = rng.randint(8, 120)
    return (f"--- a/{path}\n+++ b/{path}\n@@ -{line},3 +{line},3 @@\n"
            f"-    items = [v for v in {old}.get('{old}', []) if v]\n"
            f"+    items = [v for v in {old}.get('{new}', []) if v is not None]\n"
            f"     if len(items) > limit:\n"
            f"@@ -{line + 5},1 +{line + 5},1 @@\n"
            f"-    return sorted(items)[:limit]\n"
            f"+    return sorted(items, key=str)[:limit]  # attempt {attempt}\n")


def _fix(task: Task, obs: list[Observation], rng: random.Random) -> Completion:
    path = task.params["path"]
    if not _done(obs, "read_file"):
        return _call(rng, f"read {path}.", "read_file", {"path": path})
    patches = _done(obs, "apply_patch")
    tests = _done(obs, "run_tests")
    if len(tests) < len(patches):
        return _call(rng, "run the tests against the patch.", "run_tests",
                     {"command": f"pytest -q {task.params['test']} tests/"})
    if tests and tests[-1].result["failed"] == 0:
        return Completion(f"Fixed {path} in {len(patches)} patches; the suite passes "
                          f"({tests[-1].result['passed']} passed).")
    why = ("the original failure" if not tests else
           f"{tests[-1].result['failed']} failing tests, e.g. {tests[-1].result['failures'][0]}")
    return _call(rng, f"patch {path} to address {why}.", "apply_patch",
                 {"diff": _diff(rng, path, len(patches) + 1), "files": [path]})


_PLANNERS = {"weather": _weather, "docs": _docs, "sql": _sql, "report": _report,
             "incident": _incident, "reconcile": _reconcile, "fix": _fix}
