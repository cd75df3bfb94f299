"""The demo agent's world: repositories, documents, a sales database, weather, a test suite —
all generated from a seed, so a tool's answer depends only on the seed and its arguments.

The tools are plain local functions (no network, no file system). ``World`` is made per trace;
``World.call(tool, args)`` is what the agent runs inside an SDK ``tool_call``.
"""

from __future__ import annotations

import json
import random
from typing import Any, Callable

REPOS = ["acme/parser", "northwind/billing", "orbit/scheduler", "lumen/search", "harbor/cli",
         "quill/markdown", "atlas/geocoder", "ember/cache", "juniper/notify", "fathom/metrics"]
VERBS = ["parse", "load", "merge", "resolve", "render", "flush", "validate", "encode", "split",
         "retry", "schedule", "index", "normalize", "compact", "fetch", "score", "emit", "trim"]
NOUNS = ["token", "record", "header", "batch", "window", "config", "payload", "cursor", "slot",
         "segment", "invoice", "query", "route", "snapshot", "ledger", "buffer", "span", "key"]
MODULES = ["core", "io", "models", "service", "client", "cache", "schema", "pipeline", "api"]
CITIES = ["Lisbon", "Oslo", "Kyoto", "Montreal", "Valparaíso", "Nairobi", "Reykjavík", "Hobart",
          "Tbilisi", "Cusco", "Tallinn", "Porto", "Da Nang", "Wellington", "Marrakesh"]
CONDITIONS = ["sunny", "partly cloudy", "overcast", "light rain", "showers", "thunderstorms",
              "fog", "windy", "snow flurries", "clear"]
REGIONS = ["emea", "na-east", "na-west", "latam", "apac", "anz"]
TOPICS = {
    "rate limits": "The API allows {n} requests per minute per key; a 429 carries Retry-After "
                   "in seconds. Clients should back off exponentially with jitter, starting at "
                   "{m} ms.",
    "pagination": "List endpoints return at most {n} items and a `next` cursor. Cursors are "
                  "opaque and expire after {m} minutes; re-issue the query when one does.",
    "authentication": "Tokens are scoped to one project and carry scopes. A token older than "
                      "{n} days must be rotated; rotation keeps the old token valid for {m} "
                      "minutes.",
    "caching": "Responses carry an ETag. The cache keeps {n} entries per process and evicts "
               "the least recently used; entries older than {m} seconds are revalidated.",
    "retries": "Idempotent requests are retried up to {n} times. Non-idempotent requests need "
               "an Idempotency-Key header; the server remembers keys for {m} hours.",
    "webhooks": "Webhook deliveries are signed with HMAC-SHA256. A delivery is retried {n} "
                "times over {m} hours, and disabled after that.",
    "timeouts": "The default request timeout is {n} s. Long exports run as jobs: poll the job "
                "every {m} s or subscribe to its events.",
    "batching": "Batch endpoints accept up to {n} items; the whole batch is refused when one "
                "item is invalid, with the item's index in `errors`. Keep batches under {m} KB.",
    "schema migrations": "Migrations run in order and are reversible where possible. A "
                         "migration touching more than {n} rows should be split; lock waits "
                         "over {m} s abort it.",
    "logging": "Logs are JSON lines with `level`, `msg` and `trace_id`. At most {n} KB per "
               "line are kept; sampled debug logs keep 1 in {m}.",
}


def _rng(*parts: Any) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))


def identifier(rng: random.Random) -> str:
    return f"{rng.choice(VERBS)}_{rng.choice(NOUNS)}"


def source_file(seed: str, path: str, *, functions: int) -> str:
    """A Python module of ``functions`` functions, the same for the same seed and path."""
    rng = _rng(seed, "file", path)
    lines = [f'"""{path}: {rng.choice(NOUNS)} handling for the {rng.choice(MODULES)} layer."""',
             "", "from __future__ import annotations", "", "import logging", "",
             "logger = logging.getLogger(__name__)", ""]
    for i in range(functions):
        name = f"{identifier(rng)}_{i}"
        arg = rng.choice(NOUNS)
        limit = rng.randint(2, 4096)
        lines += [
            "", f"def {name}({arg}: dict, *, limit: int = {limit}) -> list:",
            f'    """{rng.choice(VERBS).capitalize()} the {arg} and return at most `limit` '
            f'{rng.choice(NOUNS)}s."""',
            f"    items = [v for v in {arg}.get({rng.choice(NOUNS)!r}, []) if v]",
            "    if len(items) > limit:",
            f"        logger.debug('{name}: %d over the limit', len(items) - limit)",
            "    return sorted(items)[:limit]",
        ]
    return "\n".join(lines) + "\n"


class World:
    """The tools of one trace. ``seed`` makes the world; the arguments pick the answer."""

    def __init__(self, seed: str) -> None:
        self.seed = seed
        rng = _rng(seed, "world")
        self.repo = rng.choice(REPOS)
        self.files = {f"src/{rng.choice(MODULES)}/{identifier(rng)}.py": rng.randint(4, 90)
                      for _ in range(4)}
        self.tests_fixed_after = 2  # run_tests passes once this many patches are applied
        self.patches_applied = 0
        self.tools: dict[str, Callable[[dict], Any]] = {
            "read_file": self.read_file, "search_docs": self.search_docs,
            "sql_query": self.sql_query, "weather": self.weather,
            "apply_patch": self.apply_patch, "run_tests": self.run_tests,
        }

    def call(self, tool: str, args: dict) -> Any:
        return self.tools[tool](args)

    # --- the tools ---------------------------------------------------------------------------

    def read_file(self, args: dict) -> str:
        path = str(args["path"])
        functions = self.files.get(path, 6)
        return source_file(self.seed, path, functions=functions)

    def search_docs(self, args: dict) -> list[dict]:
        query = str(args["query"])
        rng = _rng(self.seed, "docs", query)
        words = set(query.lower().split())
        topics = sorted(TOPICS, key=lambda t: (-len(words & set(t.split())), rng.random()))
        hits = []
        for rank, topic in enumerate(topics[: int(args.get("k", 3))]):
            text = TOPICS[topic].format(n=rng.choice([5, 10, 30, 60, 100, 250, 600, 1000]),
                                        m=rng.choice([2, 15, 24, 50, 200, 500]))
            hits.append({"title": f"{self.repo} docs: {topic}",
                         "url": f"https://docs.example.com/{self.repo}/{topic.replace(' ', '-')}",
                         "score": round(0.95 - rank * 0.11 - rng.random() * 0.05, 3),
                         "snippet": text})
        return hits

    def sql_query(self, args: dict) -> dict:
        sql = str(args["sql"])
        rng = _rng(self.seed, "sql", sql)
        limit = int(args.get("limit", 5))
        regions = rng.sample(REGIONS, k=min(limit, len(REGIONS)))
        rows = [[region, round(rng.uniform(12_000, 480_000), 2), rng.randint(40, 3_000)]
                for region in regions]
        rows.sort(key=lambda r: -r[1])
        return {"columns": ["region", "revenue_usd", "orders"], "rows": rows,
                "row_count": len(rows)}

    def weather(self, args: dict) -> dict:
        city = str(args["city"])
        days = int(args.get("days", 3))
        rng = _rng(self.seed, "weather", city)
        base = rng.uniform(-4, 28)
        return {"city": city, "unit": "celsius", "forecast": [
            {"day": d + 1, "high": round(base + rng.uniform(0, 7), 1),
             "low": round(base - rng.uniform(2, 9), 1), "conditions": rng.choice(CONDITIONS),
             "precipitation_mm": round(max(0.0, rng.gauss(2, 4)), 1)} for d in range(days)]}

    def apply_patch(self, args: dict) -> dict:
        self.patches_applied += 1
        files = list(args["files"])
        return {"applied": True, "files": files, "hunks": str(args["diff"]).count("@@ ") // 2}

    def run_tests(self, args: dict) -> dict:
        rng = _rng(self.seed, "tests", self.patches_applied)
        total = rng.randint(24, 180)
        failing = 0 if self.patches_applied >= self.tests_fixed_after else rng.randint(1, 4)
        names = [f"tests/test_{identifier(rng)}.py::test_{identifier(rng)}"
                 for _ in range(failing)]
        lines = [f"{args['command']}", f"collected {total} items", ""]
        lines += [f"FAILED {n} - AssertionError: expected {rng.randint(1, 99)}, "
                  f"got {rng.randint(100, 999)}" for n in names]
        skipped = rng.randint(0, 3)
        lines.append(f"{total - failing - skipped} passed, {failing} failed, {skipped} skipped")
        return {"passed": total - failing - skipped, "failed": failing, "skipped": skipped,
                "failures": names, "output": "\n".join(lines)}


def render(result: Any) -> str:
    """A tool result as the text a model would see."""
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
