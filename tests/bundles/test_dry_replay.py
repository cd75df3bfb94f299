"""``POST /api/v1/bundles/dry-replay``: the span tree rebuilt from the bundle alone, what is wrong
with it, and the recorded LLM/tool calls — with nothing stored."""

from __future__ import annotations

import pytest

from bundles import format as fmt
from tests.bundles.builders import MS, agent_bundle, sha, zip_entries
from tests.traces.otlp_builders import NOW, json_span

TRACE = "ab" * 16


@pytest.mark.django_db
def test_a_sound_bundle(post_bundle, nothing_written):
    trace = agent_bundle(TRACE)
    with nothing_written():
        resp = post_bundle(trace.zip(), "dry-replay")
    assert resp.status_code == 200, resp.content
    report = resp.json()
    assert report["ok"] is True and report["findings"] == [] and report["hash_mismatches"] == []
    assert (report["trace_id"], report["run_id"]) == (TRACE, trace.run_id)
    assert report["manifest"]["export_mode"] == "full"
    assert report["manifest"]["counts"] == {"spans": 4, "run_events": 8, "payloads": 3}
    tree = report["tree"]
    assert tree["roots"] == [{"span_id": "1" * 16, "name": "invoke_agent planner",
                              "parent_span_id": None}]
    assert (tree["spans"], tree["depth"], tree["orphan_count"], tree["cycles"]) == (4, 2, 0, [])
    assert report["span_types"] == {"llm": 2, "tool": 1, "agent": 1, "chain": 0,
                                    "retriever": 0, "other": 0}
    assert [(c["type"], c["name"], c["model"], c["tool"], c["status"], c["start_offset_ms"],
             c["duration_ms"]) for c in report["calls"]] == [
        ("llm", "chat gpt-4o", "gpt-4o", None, "ok", 10.0, 300.0),
        ("tool", "execute_tool sql_query", None, "sql_query", "ok", 320.0, 200.0),
        ("llm", "chat gpt-4o-mini", "gpt-4o-mini", None, "error", 530.0, 350.0),
    ]
    assert report["calls"][0]["input_tokens"] == 1200
    assert report["payloads"] == {"in_bundle": 3, "referenced": 3, "missing": [],
                                  "missing_count": 0, "corrupt": [],
                                  "left_out_by_export": False, "unreferenced": 0}
    assert report["run"]["events"] == 8 and report["run"]["seq_gaps"] == []
    assert report["run"]["event_types"]["llm_request"] == 1


def _span(span_id: str, parent: str = "", offset_ms: int = 0) -> dict:
    return json_span(TRACE, span_id, f"op {span_id[:2]}", parent=parent,
                     start=NOW + offset_ms * MS)


@pytest.mark.django_db
def test_orphans_cycles_and_depth(post_bundle):
    a, b, c, d, e, f, g = (ch * 16 for ch in "abcdef7")
    trace = agent_bundle(TRACE, run=False)
    trace.payloads = {}
    trace.spans = [
        _span(a), _span(b, parent=a, offset_ms=1), _span(c, parent=b, offset_ms=2),
        _span(d, parent="9" * 16, offset_ms=3),  # its parent never arrived
        _span(e, parent=f, offset_ms=4), _span(f, parent=e, offset_ms=5),  # a loop of two
        _span(g, parent=g, offset_ms=6),  # its own parent
    ]
    report = post_bundle(trace.zip(), "dry-replay").json()
    tree = report["tree"]
    assert [r["span_id"] for r in tree["roots"]] == [a]
    assert tree["orphans"] == [{"span_id": d, "name": "op dd", "parent_span_id": "9" * 16}]
    assert tree["cycles"] == [[g], [e, f]]
    assert (tree["depth"], tree["unreachable"], tree["spans"]) == (3, 3, 7)
    kinds = sorted(f["kind"] for f in report["findings"])
    assert kinds == ["cycle", "cycle", "orphan_spans"]
    assert report["ok"] is False
    assert report["span_types"]["other"] == 7 and report["calls"] == []


@pytest.mark.django_db
def test_missing_payloads_are_findings_unless_the_export_left_them_all_out(post_bundle):
    trace = agent_bundle(TRACE)
    del trace.payloads[sha(trace.tool_result.encode())]
    report = post_bundle(trace.zip(), "dry-replay").json()
    assert report["payloads"]["missing"] == [sha(trace.tool_result.encode())]
    assert [f["kind"] for f in report["findings"]] == ["missing_payloads"]
    trace.payloads = {}
    strict = post_bundle(trace.zip(export_mode="strict"), "dry-replay").json()
    assert strict["ok"] is True and strict["payloads"]["left_out_by_export"] is True
    assert strict["payloads"]["missing_count"] == 3


@pytest.mark.django_db
def test_event_gaps_and_count_mismatches(post_bundle):
    trace = agent_bundle(TRACE)
    del trace.events[4]
    manifest_counts_8 = trace.manifest()
    manifest_counts_8["counts"]["run_events"] = 8
    report = post_bundle(zip_entries(trace.entries(), manifest_counts_8), "dry-replay").json()
    assert report["run"]["seq_gaps"] == [5]
    assert [f["kind"] for f in report["findings"]] == ["event_sequence"]
    trace = agent_bundle(TRACE)
    listed = trace.manifest()
    listed["counts"]["spans"] = 5
    report = post_bundle(zip_entries(trace.entries(), listed), "dry-replay").json()
    assert [f["kind"] for f in report["findings"]] == ["count_mismatch"]
    assert report["findings"][0]["entry"] == fmt.SPANS
