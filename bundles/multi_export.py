"""Several bundles in one download: a zip holding one bundle (itself a zip) per trace or run,
named ``<trace_id>.zip`` or ``<run_id>.zip``; what the admin's "Export selected as bundle"
action sends when more than one row is selected.

The bundles are prepared one at a time, as the outer zip streams: only one bundle's spool
exists at any moment, so a hundred large traces need no more memory or disk than the largest
one. The entries are stored, not deflated again (a bundle is already deflated). A trace or run
that vanished between the selection and its turn is left out and named in ``MISSING.txt``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator

from bundles import format as fmt
from bundles.exports import PreparedBundle
from bundles.streaming import Pipe
from tracefoundry.errors import NotFound

CHUNK = 256 * 1024
MISSING = "MISSING.txt"


def bundles_zip(idents: list[str], prepare: Callable[[str], PreparedBundle]) -> Iterator[bytes]:
    """The outer zip, a chunk at a time: ``prepare(ident)`` for each ident in order, its bundle
    stored as ``<ident>.zip``."""
    out = Pipe()
    missing: list[str] = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for ident in idents:
            try:
                bundle = prepare(ident)
            except NotFound:
                missing.append(ident)
                continue
            chunks = bundle.chunks()
            try:
                # The bundle's size is not known before it is deflated: zip64 headers, so a
                # bundle over 2 GiB cannot end the stream with an error.
                with archive.open(_stored(f"{ident}.zip"), "w", force_zip64=True) as member:
                    for chunk in chunks:
                        member.write(chunk)
                        if out.size >= CHUNK:
                            yield out.take()
            finally:
                chunks.close()
                bundle.close()  # an unstarted generator's cleanup never runs
        if missing:
            text = "Left out (deleted after they were selected):\n" + "\n".join(missing) + "\n"
            archive.writestr(_stored(MISSING), text)
    yield out.take()


def _stored(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=fmt.ZIP_TIMESTAMP)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o100644 << 16
    return info
