"""Hostile and broken archives: each guard of bundles/validation.py refuses its archive with a
400 ``invalid_bundle`` naming the problem, before anything is extracted or stored — no row, no
file inside the payload store or around it. The dry replay refuses the same unsafe archives,
and reports (rather than refuses) what it can: hash mismatches and corrupt payloads."""

from __future__ import annotations

import io
import json
import stat
import warnings
import zipfile

import pytest

from bundles import format as fmt
from tests.bundles.builders import agent_bundle, manifest, sha, zip_entries


def _zip(members: list[tuple[str, bytes]], *, mode: int = stat.S_IFREG | 0o644,
         modes: dict[str, int] | None = None) -> bytes:
    """A zip of ``members`` as given (names unchecked, duplicates kept)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in members:
                info = zipfile.ZipInfo(name, date_time=fmt.ZIP_TIMESTAMP)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3
                info.external_attr = (modes or {}).get(name, mode) << 16
                archive.writestr(info, data)
    return buffer.getvalue()


def _sound_members() -> list[tuple[str, bytes]]:
    trace = agent_bundle()
    entries = trace.entries()
    return [(fmt.MANIFEST, json.dumps(trace.manifest()).encode()), *entries.items()]


def _with(name: str, data: bytes = b"pwned\n") -> bytes:
    return _zip([*_sound_members(), (name, data)])


def _nul_name() -> bytes:
    """A sound bundle plus an entry named ``README.md\\x00.exe`` (zipfile cannot write a NUL:
    the name is patched in the local header and the central directory)."""
    data = _with("README.md_.exe")
    return data.replace(b"README.md_.exe", b"README.md\x00.exe")


def _duplicate() -> bytes:
    members = _sound_members()
    return _zip([*members, (fmt.README, b"a second README\n")])


def _symlink() -> bytes:
    members = [(n, d) for n, d in _sound_members() if n != fmt.README]
    return _zip([*members, (fmt.README, b"/etc/passwd")],
                modes={fmt.README: stat.S_IFLNK | 0o777})


def _fifo() -> bytes:
    members = [(n, d) for n, d in _sound_members() if n != fmt.README]
    return _zip([*members, (fmt.README, b"")], modes={fmt.README: stat.S_IFIFO | 0o644})


def _bomb() -> bytes:
    zeros = bytes(24 * 1024 * 1024)  # 24 MiB of zeros deflate to ~24 KiB: about 1000:1
    return _zip([*_sound_members(), (fmt.PAYLOADS_DIR + sha(zeros), zeros)])


def _tampered_spans() -> bytes:
    trace = agent_bundle()
    listed = trace.manifest()
    entries = trace.entries()
    entries[fmt.SPANS] = entries[fmt.SPANS].replace(b"agent planner", b"agent plotter")
    return zip_entries(entries, listed)


def _corrupt_payload() -> bytes:
    """A payload whose bytes changed after it was named: the manifest lists the new bytes (so
    their hash matches the manifest), but they no longer hash to the entry's name."""
    trace = agent_bundle()
    entries = trace.entries()
    name = fmt.PAYLOADS_DIR + sha(trace.prompt.encode())
    entries[name] = trace.prompt.replace("careful", "careless").encode()
    return zip_entries(entries, manifest(entries, trace_id=trace.trace_id, run_id=trace.run_id,
                                         spans=len(trace.spans), run_events=len(trace.events)))


def _unknown_version() -> bytes:
    return agent_bundle().zip(format_version=99)


def _not_a_zip() -> bytes:
    return b"%PDF-1.7\n" + b"not a zip at all\n" * 100


def _truncated() -> bytes:
    data = agent_bundle().zip()
    return data[: len(data) // 2]


# (archive, the problem in details, words of the message); refused by import and dry replay.
UNSAFE = {
    "zip slip ../x": (lambda: _with("../x"), "bad_name", "goes up a directory"),
    "nested zip slip": (lambda: _with("payloads/../../x"), "bad_name", "goes up a directory"),
    "absolute /etc/x": (lambda: _with("/etc/x"), "bad_name", "absolute path"),
    "drive letter C:\\x": (lambda: _with("C:\\x"), "bad_name", "backslash"),
    "drive letter C:/x": (lambda: _with("C:/x"), "bad_name", "absolute path"),
    "backslash a\\..\\x": (lambda: _with("a\\..\\x"), "bad_name", "backslash"),
    "NUL in a name": (_nul_name, "bad_name", "NUL"),
    "unknown name": (lambda: _with("run.py"), "bad_name", "not a name the bundle format"),
    "directory entry": (lambda: _with("payloads/"), "bad_name", "empty"),
    "duplicate names": (_duplicate, "duplicate", "appears twice"),
    "symlink entry": (_symlink, "bad_entry_type", "symbolic link"),
    "fifo entry": (_fifo, "bad_entry_type", "not a regular file"),
    "zip bomb by ratio": (_bomb, "compression_ratio", "expands"),
    "unknown version": (_unknown_version, "unsupported_version", "version 99"),
    "not a zip at all": (_not_a_zip, "not_a_zip", "not a zip"),
    "truncated zip": (_truncated, "not_a_zip", "not a zip"),
}
# Refused by the import; reported by the dry replay as a finding of this kind.
BROKEN = {
    "manifest hash mismatch": (_tampered_spans, "hash_mismatch", "does not match the manifest"),
    "corrupt payload": (_corrupt_payload, "corrupt_payload", "do not hash to its name"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ["import", "dry-replay"])
@pytest.mark.parametrize("case", list(UNSAFE), ids=list(UNSAFE))
def test_unsafe_archives_are_refused_and_leave_nothing(case, endpoint, post_bundle,
                                                       nothing_written):
    build, problem, words = UNSAFE[case]
    data = build()
    with nothing_written():
        resp = post_bundle(data, endpoint)
    assert resp.status_code == 400, resp.content
    error = resp.json()["error"]
    assert error["code"] == "invalid_bundle"
    assert error["details"]["problem"] == problem
    assert words in error["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_broken_bundles_are_refused_by_the_import(case, post_bundle, nothing_written):
    build, problem, words = BROKEN[case]
    with nothing_written():
        resp = post_bundle(build())
    assert resp.status_code == 400, resp.content
    error = resp.json()["error"]
    assert (error["code"], error["details"]["problem"]) == ("invalid_bundle", problem)
    assert words in error["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_the_dry_replay_reports_them_instead(case, post_bundle, nothing_written):
    build, problem, words = BROKEN[case]
    with nothing_written():
        resp = post_bundle(build(), "dry-replay")
    assert resp.status_code == 200, resp.content
    report = resp.json()
    assert report["ok"] is False
    kinds = [f["kind"] for f in report["findings"]]
    assert problem in kinds
    finding = report["findings"][kinds.index(problem)]
    assert words in finding["message"]
    assert finding["expected"] != finding["actual"]
    if problem == "hash_mismatch":
        assert report["hash_mismatches"] == [finding]
        assert finding["entry"] == fmt.SPANS
        # What the file holds is still read: the tree is rebuilt from it all the same.
        assert report["tree"]["spans"] == 4
        assert report["tree"]["roots"][0]["name"] == "invoke_agent plotter"
    else:
        assert report["payloads"]["corrupt"] == [finding["entry"].removeprefix("payloads/")]


@pytest.mark.django_db
def test_too_many_entries(settings, post_bundle, nothing_written):
    settings.TRACEFOUNDRY_BUNDLE_MAX_ENTRIES = 5
    with nothing_written():
        resp = post_bundle(agent_bundle().zip())
    error = resp.json()["error"]
    assert resp.status_code == 400 and error["details"]["problem"] == "too_many_entries"
    assert "8 entries; the limit is 5" in error["message"]


@pytest.mark.django_db
def test_too_many_bytes_uncompressed(settings, post_bundle, nothing_written):
    settings.TRACEFOUNDRY_BUNDLE_MAX_BYTES = 20_000
    with nothing_written():
        resp = post_bundle(agent_bundle().zip())
    error = resp.json()["error"]
    assert resp.status_code == 400 and error["details"]["problem"] == "too_large"
    assert "TRACEFOUNDRY_BUNDLE_MAX_BYTES" in error["message"]


@pytest.mark.django_db
def test_the_ratio_limit_is_a_setting(settings, post_bundle, nothing_written):
    """A legitimate bundle of very repetitive spans passes the default and fails a tight limit
    (its spans entry is over the 64 KiB floor below which the ratio is not checked)."""
    trace = agent_bundle()
    filler = {"key": "filler", "value": {"stringValue": "same words " * 20_000}}
    trace.spans[0]["attributes"].append(filler)
    assert post_bundle(trace.zip(), "dry-replay").status_code == 200
    settings.TRACEFOUNDRY_BUNDLE_MAX_RATIO = 10
    with nothing_written():
        resp = post_bundle(trace.zip())
    error = resp.json()["error"]
    assert resp.status_code == 400 and error["details"]["problem"] == "compression_ratio"
    assert error["details"]["entry"] == fmt.SPANS


@pytest.mark.django_db
def test_a_missing_manifest_or_an_invalid_one(post_bundle, nothing_written):
    trace = agent_bundle()
    with nothing_written():
        missing = post_bundle(zip_entries(trace.entries(), None))
        bad_mode = post_bundle(trace.zip(export_mode="sloppy"))
        no_ids = post_bundle(trace.zip(trace_id=None, run_id=None))
    assert missing.json()["error"]["details"]["problem"] == "no_manifest"
    assert bad_mode.json()["error"]["message"].startswith("manifest.json: export_mode:")
    assert "a bundle holds a trace, a run, or both" in no_ids.json()["error"]["message"]
    assert {r.status_code for r in (missing, bad_mode, no_ids)} == {400}


@pytest.mark.django_db
def test_unlisted_and_missing_files(post_bundle, nothing_written):
    trace = agent_bundle()
    listed = trace.manifest()
    entries = trace.entries()
    extra = dict(entries)
    extra[fmt.PAYLOADS_DIR + sha(b"extra")] = b"extra"  # an entry the manifest does not list
    fewer = dict(entries)
    del fewer[fmt.README]  # a file the manifest lists
    with nothing_written():
        unlisted = post_bundle(zip_entries(extra, listed))
        missing = post_bundle(zip_entries(fewer, listed))
    assert unlisted.json()["error"]["details"]["problem"] == "unlisted_file"
    assert missing.json()["error"]["details"]["problem"] == "missing_file"
    report = post_bundle(zip_entries(fewer, listed), "dry-replay").json()
    assert [f["kind"] for f in report["findings"]] == ["missing_file"]


@pytest.mark.django_db
def test_spans_that_are_not_otlp_json(post_bundle, nothing_written):
    trace = agent_bundle()
    entries = trace.entries()
    entries[fmt.SPANS] = b'{"resourceSpans": [{"scopeSpans": "nope"}]}'
    listed = trace.manifest()
    listed["files"][fmt.SPANS] = {"sha256": sha(entries[fmt.SPANS]),
                                  "size": len(entries[fmt.SPANS])}
    with nothing_written():
        resp = post_bundle(zip_entries(entries, listed))
    error = resp.json()["error"]
    assert resp.status_code == 400 and error["details"]["problem"] == "bad_spans"
    assert "resourceSpans[0].scopeSpans: must be a list" in error["message"]


@pytest.mark.django_db
def test_a_malformed_event_is_refused_before_anything_is_stored(post_bundle, nothing_written):
    trace = agent_bundle()
    trace.events[3]["level"] = "loud"
    with nothing_written():
        resp = post_bundle(trace.zip())
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "invalid" and "level must be one of" in error["message"]
    assert error["details"]["index"] == 3


@pytest.mark.django_db
def test_a_trace_without_spans_or_an_event_type_with_a_credential(post_bundle, nothing_written):
    trace = agent_bundle()
    trace.spans = []
    with nothing_written():
        empty = post_bundle(trace.zip())
    assert empty.status_code == 400 and "holds no spans" in empty.json()["error"]["message"]
    trace = agent_bundle()
    trace.events[4]["type"] = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"  # a GitHub token
    with nothing_written():
        secret = post_bundle(trace.zip())
    assert secret.status_code == 400, secret.content
    assert secret.json()["error"]["message"] == "event 4: type must not contain a credential"


@pytest.mark.django_db
def test_a_large_upload_is_read_from_its_temporary_file(settings, post_bundle):
    """Above FILE_UPLOAD_MAX_MEMORY_SIZE Django spools the upload to a temporary file: the zip
    is read from there just the same."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    resp = post_bundle(agent_bundle().zip())
    assert resp.status_code == 201, resp.content
