"""How many SMS segments a text takes, as carriers count them: GSM 03.38 text (the ``gsm0338``
codec, where an extension character such as ``€`` or ``^`` takes two septets) fits 160
septets in one message and 153 per segment once split; anything else goes as UCS-2, 70
UTF-16 code units in one message and 67 per segment. Shown beside a template's SMS preview,
since each segment is billed."""

from __future__ import annotations

from dataclasses import dataclass

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

#: Per encoding: what one message holds, and what each segment of a split one holds.
LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclass(frozen=True)
class Segments:
    encoding: str
    #: Septets (GSM-7) or UTF-16 code units (UCS-2).
    units: int
    count: int

    def view(self) -> dict[str, object]:
        return {"encoding": self.encoding, "units": self.units, "count": self.count}


def segments(text: str) -> Segments:
    try:
        encoding, units = "GSM-7", len(text.encode("gsm03.38"))
    except UnicodeEncodeError:
        encoding, units = "UCS-2", len(text.encode("utf-16-le")) // 2
    single, each = LIMITS[encoding]
    if units == 0:
        return Segments(encoding, 0, 0)
    return Segments(encoding, units, 1 if units <= single else -(-units // each))
