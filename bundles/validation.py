"""Reading an uploaded bundle without trusting it: every check runs on the zip as it was
uploaded, before anything is extracted or stored.

Nothing is ever written to disk: members are read from ``zipfile.ZipFile`` in chunks, hashed as
they stream, and only the small JSON entries are kept in memory (payload blobs are read again,
and hashed again, when the import stores them). The checks, in order:

1. the upload is a zip whose end record declares at most ``max_entries`` entries (read before
   ``zipfile`` parses a central directory of any size);
2. every entry name: no NUL, no backslash, no absolute path or drive letter, no ``..`` or empty
   component, no duplicate, and only the names ``format.is_entry_name`` accepts;
3. every entry is a plain file (the Unix mode bits in ``external_attr``: no symlink, directory,
   device or FIFO), not encrypted, stored or deflated;
4. limits: entry count, total uncompressed size, and the compression ratio of every entry over
   ``RATIO_FLOOR`` bytes and of the whole archive (a zip bomb's declared sizes are what it
   expands to: ``zipfile`` never returns more than an entry declares, and a CRC check fails an
   entry that lies);
5. ``manifest.json`` against ``format.ManifestSerializer`` (format, version, fields);
6. every other entry's SHA-256 and size against the manifest, entries the manifest does not
   list, files it lists that are missing;
7. each ``payloads/<sha256>`` against the hash of its bytes.

``bundle_open(lenient=False)`` (import) refuses at the first problem: ``InvalidBundle``, a 400
naming it. ``lenient=True`` (dry replay) still refuses 1-5, which make the archive unsafe or
unreadable, and reports 6-7 as findings.
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from django.conf import settings

from bundles import format as fmt
from tracefoundry.errors import InvalidInput
from traces.otlp_decode import Decoded, DecodeError, decode_json

CHUNK = 64 * 1024
# Entries at most this big are not ratio-checked: they cannot expand into anything harmful,
# and small JSON files legitimately compress very well.
RATIO_FLOOR = 64 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_END_RECORD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_END_RECORD = b"PK\x06\x06"
_END_RECORD_SIZE = 22
_MAX_COMMENT = 65_535
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_UNIX = 3  # ZipInfo.create_system of archives made on Unix: the mode is in external_attr


class InvalidBundle(InvalidInput):
    """The upload is not a bundle this server can safely read (HTTP 400); nothing was stored."""

    code = "invalid_bundle"


@dataclass(frozen=True)
class Limits:
    max_entries: int
    max_bytes: int
    max_ratio: int

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(max_entries=settings.TRACEFOUNDRY_BUNDLE_MAX_ENTRIES,
                   max_bytes=settings.TRACEFOUNDRY_BUNDLE_MAX_BYTES,
                   max_ratio=settings.TRACEFOUNDRY_BUNDLE_MAX_RATIO)


@dataclass(frozen=True)
class Finding:
    """A problem a dry replay reports (an import refuses at the first one)."""

    kind: str  # hash_mismatch | size_mismatch | missing_file | unlisted_file | corrupt_payload
    entry: str
    message: str
    expected: str | None = None
    actual: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "entry": self.entry, "message": self.message,
                "expected": self.expected, "actual": self.actual}


@dataclass
class Bundle:
    """An opened bundle: its validated manifest, and the contents of its JSON entries."""

    archive: zipfile.ZipFile
    manifest: dict
    entries: dict[str, zipfile.ZipInfo]
    findings: list[Finding] = field(default_factory=list)
    contents: dict[str, bytes] = field(default_factory=dict)  # the non-payload entries
    payloads: set[str] = field(default_factory=set)  # sha256 of each sound payload entry

    @property
    def trace_id(self) -> str | None:
        return self.manifest["trace_id"]

    @property
    def run_id(self) -> str | None:
        return self.manifest["run_id"]

    def content_type(self, sha256: str) -> str | None:
        entry = self.manifest["files"].get(fmt.PAYLOADS_DIR + sha256) or {}
        return entry.get("content_type")

    def payload(self, sha256: str) -> bytes | None:
        """The bytes of ``payloads/<sha256>``, read again and checked again; None when the
        bundle does not hold them (or they do not hash to their name)."""
        if sha256 not in self.payloads:
            return None
        data = b"".join(_chunks(self.archive, self.entries[fmt.PAYLOADS_DIR + sha256]))
        if hashlib.sha256(data).hexdigest() != sha256:  # the upload changed under us
            raise InvalidBundle(f"payloads/{sha256} changed while it was read")
        return data

    def close(self) -> None:
        self.archive.close()


def _refuse(message: str, **details: Any) -> InvalidBundle:
    return InvalidBundle(message, details=details)


def bundle_open(file: IO[bytes], *, lenient: bool = False,
                limits: Limits | None = None) -> Bundle:
    """Validate the bundle in ``file`` (a seekable binary file) and open it; see the module."""
    limits = limits or Limits.from_settings()
    archive = _open_zip(file, limits)
    try:
        entries = _checked_entries(archive, limits)
        manifest = _manifest(archive, entries)
        bundle = Bundle(archive=archive, manifest=manifest, entries=entries)
        _verify_files(bundle, lenient=lenient)
    except BaseException:
        archive.close()
        raise
    return bundle


# --- 1. a zip, with a bounded number of entries ----------------------------------------------

def _open_zip(file: IO[bytes], limits: Limits) -> zipfile.ZipFile:
    declared = _declared_entries(file)
    if declared is None:
        raise _refuse("the upload is not a zip archive", problem="not_a_zip")
    if declared > limits.max_entries:
        raise _too_many(declared, limits)
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            NotImplementedError) as exc:
        raise _refuse(f"the upload is not a readable zip archive: {exc}",
                      problem="not_a_zip") from None
    if len(archive.infolist()) > limits.max_entries:
        archive.close()
        raise _too_many(len(archive.infolist()), limits)
    return archive


def _too_many(count: int, limits: Limits) -> InvalidBundle:
    return _refuse(f"the archive has {count} entries; the limit is {limits.max_entries} "
                   f"(TRACEFOUNDRY_BUNDLE_MAX_ENTRIES)", problem="too_many_entries",
                   entries=count, limit=limits.max_entries)


def _declared_entries(file: IO[bytes]) -> int | None:
    """The entry count the zip's end record declares, without parsing the central directory;
    None when there is no end record (not a zip)."""
    file.seek(0, io.SEEK_END)
    size = file.tell()
    start = max(size - _END_RECORD_SIZE - _MAX_COMMENT, 0)
    file.seek(start)
    tail = file.read()
    at = tail.rfind(_END_RECORD)
    if at < 0 or len(tail) - at < _END_RECORD_SIZE:
        return None
    (count,) = struct.unpack("<H", tail[at + 10:at + 12])
    if count == 0xFFFF and at >= 20 and tail[at - 20:at - 16] == _ZIP64_LOCATOR:
        (offset,) = struct.unpack("<Q", tail[at - 12:at - 4])
        file.seek(offset)
        record = file.read(56)
        if len(record) == 56 and record[:4] == _ZIP64_END_RECORD:
            (count,) = struct.unpack("<Q", record[32:40])
    file.seek(0)
    return count


# --- 2-4. names, kinds and sizes of the entries ----------------------------------------------

def _name_problem(raw: str) -> str | None:
    """Why an entry name is refused (before looking at what the format accepts)."""
    if "\x00" in raw:
        return "contains a NUL character"
    if "\\" in raw:
        return "contains a backslash"
    if raw.startswith("/") or _DRIVE.match(raw):
        return "is an absolute path"
    parts = raw.split("/")
    if ".." in parts:
        return "goes up a directory (..)"
    if "" in parts or "." in parts:
        return "has an empty or '.' path component"
    if not fmt.is_entry_name(raw):
        return "is not a name the bundle format uses"
    return None


def _kind_problem(info: zipfile.ZipInfo) -> str | None:
    if info.is_dir():
        return "is a directory"
    if info.create_system == _UNIX:
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if stat.S_ISLNK(mode):
            return "is a symbolic link"
        if kind not in (0, stat.S_IFREG):
            return "is not a regular file"
    if info.flag_bits & 0x1:
        return "is encrypted"
    if info.compress_type not in _METHODS:
        return f"uses compression method {info.compress_type} (only stored and deflated)"
    return None


def _checked_entries(archive: zipfile.ZipFile, limits: Limits) -> dict[str, zipfile.ZipInfo]:
    entries: dict[str, zipfile.ZipInfo] = {}
    total = compressed = 0
    for info in archive.infolist():
        raw = info.orig_filename
        shown = raw.replace("\x00", "\\x00")
        problem = _name_problem(raw)
        if problem:
            raise _refuse(f"entry {shown!r} {problem}", entry=shown, problem="bad_name")
        if raw in entries:
            raise _refuse(f"entry {shown!r} appears twice", entry=shown, problem="duplicate")
        problem = _kind_problem(info)
        if problem:
            raise _refuse(f"entry {shown!r} {problem}", entry=shown, problem="bad_entry_type")
        entries[raw] = info
        total += info.file_size
        compressed += info.compress_size
        if total > limits.max_bytes:
            raise _refuse(
                f"the archive expands to more than {limits.max_bytes} bytes "
                f"(TRACEFOUNDRY_BUNDLE_MAX_BYTES)", problem="too_large", limit=limits.max_bytes)
        if info.file_size > RATIO_FLOOR and \
                info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise _refuse(
                f"entry {shown!r} expands {info.file_size // max(info.compress_size, 1)}:1; "
                f"the limit is {limits.max_ratio}:1 (TRACEFOUNDRY_BUNDLE_MAX_RATIO)",
                entry=shown, problem="compression_ratio", limit=limits.max_ratio)
    if total > RATIO_FLOOR and total > limits.max_ratio * max(compressed, 1):
        raise _refuse(
            f"the archive expands {total // max(compressed, 1)}:1; the limit is "
            f"{limits.max_ratio}:1 (TRACEFOUNDRY_BUNDLE_MAX_RATIO)",
            problem="compression_ratio", limit=limits.max_ratio)
    return entries


def _chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """An entry's bytes in chunks; a corrupt entry (bad CRC, bad deflate stream, a local
    header that disagrees with the directory) is an InvalidBundle."""
    try:
        with archive.open(info) as member:
            while chunk := member.read(CHUNK):
                yield chunk
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise _refuse(f"entry {info.filename!r} cannot be read: {exc}", entry=info.filename,
                      problem="unreadable") from None


# --- 5. the manifest --------------------------------------------------------------------------

def _manifest(archive: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo]) -> dict:
    info = entries.get(fmt.MANIFEST)
    if info is None:
        raise _refuse(f"the archive has no {fmt.MANIFEST}: not a TraceFoundry bundle",
                      entry=fmt.MANIFEST, problem="no_manifest")
    raw = b"".join(_chunks(archive, info))
    try:
        doc = _json_loads(raw)
    except ValueError as exc:
        raise _refuse(f"{fmt.MANIFEST} is not valid JSON: {exc}", entry=fmt.MANIFEST,
                      problem="bad_manifest") from None
    if not isinstance(doc, dict):
        raise _refuse(f"{fmt.MANIFEST} must be a JSON object", entry=fmt.MANIFEST,
                      problem="bad_manifest")
    serializer = fmt.ManifestSerializer(data=doc)
    if not serializer.is_valid():
        errors = serializer.errors
        # The format and its version first: nothing else means anything without them.
        name = next((k for k in ("format", "format_version") if k in errors), next(iter(errors)))
        message = _first_message(errors[name])
        problem = "unsupported_version" if name == "format_version" else "bad_manifest"
        where = "" if name == "non_field_errors" else f"{name}: "
        raise _refuse(f"{fmt.MANIFEST}: {where}{message}", entry=fmt.MANIFEST, problem=problem,
                      field=name)
    manifest = dict(serializer.validated_data)
    manifest["files"] = {name: dict(entry) for name, entry in manifest["files"].items()}
    return manifest


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        key, value = next(iter(detail.items()))
        return f"{key}: {_first_message(value)}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def _json_loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None


# --- 6-7. hashes and sizes --------------------------------------------------------------------

def _verify_files(bundle: Bundle, *, lenient: bool) -> None:
    listed: dict[str, dict] = bundle.manifest["files"]

    def found(finding: Finding) -> None:
        if not lenient:
            raise _refuse(finding.message, entry=finding.entry, problem=finding.kind,
                          expected=finding.expected, actual=finding.actual)
        bundle.findings.append(finding)

    for name in bundle.entries:
        if name != fmt.MANIFEST and name not in listed:
            found(Finding("unlisted_file", name, f"entry {name!r} is not listed in the manifest"))
    for name in sorted(listed, key=_entry_order):
        expected = listed[name]
        info = bundle.entries.get(name)
        if info is None:
            found(Finding("missing_file", name,
                          f"{name} is listed in the manifest but not in the archive"))
            continue
        digest, size, data = _digest(bundle.archive, info, keep=not name.startswith(
            fmt.PAYLOADS_DIR))
        if not name.startswith(fmt.PAYLOADS_DIR):
            # Kept even when it fails its check: an import has refused by then, and a dry
            # replay still reads what the file holds (the mismatch is one of its findings).
            bundle.contents[name] = data
        if size != expected["size"]:
            found(Finding("size_mismatch", name,
                          f"{name} is {size} bytes; the manifest says {expected['size']}",
                          expected=str(expected["size"]), actual=str(size)))
            continue
        if digest != expected["sha256"]:
            found(Finding("hash_mismatch", name,
                          f"the SHA-256 of {name} does not match the manifest",
                          expected=expected["sha256"], actual=digest))
            continue
        if name.startswith(fmt.PAYLOADS_DIR):
            sha256 = name.removeprefix(fmt.PAYLOADS_DIR)
            if digest != sha256:
                found(Finding("corrupt_payload", name,
                              f"the bytes of {name} do not hash to its name",
                              expected=sha256, actual=digest))
                continue
            bundle.payloads.add(sha256)


def _entry_order(name: str) -> tuple[int, str]:
    order = fmt.ENTRY_ORDER
    return (order.index(name), "") if name in order else (len(order), name)


def _digest(archive: zipfile.ZipFile, info: zipfile.ZipInfo, *,
            keep: bool) -> tuple[str, int, bytes]:
    h = hashlib.sha256()
    size = 0
    kept: list[bytes] = []
    for chunk in _chunks(archive, info):
        h.update(chunk)
        size += len(chunk)
        if keep:
            kept.append(chunk)
    return h.hexdigest(), size, b"".join(kept)


def json_entry(bundle: Bundle, name: str) -> Any:
    """A JSON entry's parsed contents (None when the bundle does not hold it); not valid JSON
    is an InvalidBundle."""
    raw = bundle.contents.get(name)
    if raw is None:
        return None
    try:
        return _json_loads(raw)
    except ValueError as exc:
        raise _refuse(f"{name} is not valid JSON: {exc}", entry=name,
                      problem="bad_json") from None


def jsonl_entry(bundle: Bundle, name: str) -> list[Any] | None:
    """A JSON-lines entry's objects, in order (None when absent)."""
    raw = bundle.contents.get(name)
    if raw is None:
        return None
    out = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(_json_loads(line))
        except ValueError as exc:
            raise _refuse(f"{name} line {number} is not valid JSON: {exc}", entry=name,
                          problem="bad_json", line=number) from None
    return out



def spans_entry(bundle: Bundle) -> Decoded | None:
    """``spans.otlp.json`` decoded as the OTLP endpoint decodes a JSON body (None when the
    bundle has no spans); not OTLP JSON is an InvalidBundle naming the field."""
    raw = bundle.contents.get(fmt.SPANS)
    if raw is None:
        return None
    try:
        return decode_json(raw)
    except DecodeError as exc:
        raise _refuse(f"{fmt.SPANS} is not OTLP JSON: {exc}", entry=fmt.SPANS,
                      problem="bad_spans", field=exc.field) from None
