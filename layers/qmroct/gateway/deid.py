"""De-identification entry point: sniff the format, apply the right de-identifier.

DICOM goes through the PS3.15 Basic Profile (:mod:`qmroct.gateway.deid_dicom`); vendor files are
rewritten in place (:mod:`qmroct.gateway.deid_vendor`). Anything else is refused with
:class:`~qmroct.errors.UnsupportedFormat`: the gateway never uploads what it cannot clean.
"""

from __future__ import annotations

from pathlib import Path

from qmroct.errors import UnsupportedFormat
from qmroct.gateway.deid_dicom import deidentify_dicom
from qmroct.gateway.deid_vendor import deidentify_e2e, deidentify_topcon, deidentify_vol
from qmroct.gateway.models import DeidResult
from qmroct.gateway.pseudonyms import PseudonymStore


def sniff(head: bytes, name: str = "") -> str:
    """The gateway's name for a file's format, from its first 132 bytes."""
    if head.startswith(b"HSF-OCT-"):
        return "heyex_vol"
    if head.startswith(b"CMDb"):
        return "heyex_e2e"
    if head.startswith(b"FOCT"):
        if head[4:7] == b"FDS" or name.lower().endswith(".fds"):
            return "topcon_fds"
        return "topcon_fda"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    raise UnsupportedFormat(name or "<bytes>", head[:16], reason=_why_not(head))


def _why_not(head: bytes) -> str:
    shown = head[:16].hex(" ") if head else "no bytes"
    return (
        f"not an OCT file the gateway can de-identify (first bytes: {shown}); "
        "expected Heidelberg .vol/.e2e, Topcon .fda/.fds or DICOM"
    )


def deidentify(data: bytes, pseudonyms: PseudonymStore, *, name: str = "<bytes>") -> DeidResult:
    """De-identify one file's bytes. The input bytes are never modified."""
    fmt = sniff(data[:132], name)
    if fmt == "heyex_vol":
        return deidentify_vol(data, pseudonyms, name=name)
    if fmt == "heyex_e2e":
        return deidentify_e2e(data, pseudonyms, name=name)
    if fmt in ("topcon_fda", "topcon_fds"):
        return deidentify_topcon(data, pseudonyms, name=name, ext=fmt.rsplit("_", 1)[1])
    return deidentify_dicom(data, pseudonyms, name=name)


def deidentify_file(path: str | Path, out: str | Path, pseudonyms: PseudonymStore) -> DeidResult:
    """De-identify ``path`` into ``out`` (a file, or a folder to hold {subject}_{scan}.{ext})."""
    src = Path(path)
    result = deidentify(src.read_bytes(), pseudonyms, name=str(src))
    target = Path(out)
    if target.is_dir():
        target = target / f"{result.identity.subject}_{result.identity.scan}.{result.ext}"
    if target.resolve() == src.resolve():
        raise ValueError(f"{src}: refusing to overwrite the original with its de-identified copy")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(result.data)
    return result
