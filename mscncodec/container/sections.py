"""Small fixed-layout sections declared as data, like the header: one declaration packs a section,
unpacks and checks it (one-line errors), and says what it holds for ``mscn info``.

A family owns its sections' declarations (e.g. the latent-grid families' 2-byte ``GRD2``: the lambda
index and the latent-step index); the decoder and ``mscn info`` read them from that one declaration.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mscncodec.container.bitstream import Field
from mscncodec.errors import BitstreamError


@dataclass(frozen=True)
class Section:
    tag: str  # 4 ASCII characters, the section table's name
    fields: tuple[Field, ...]

    @property
    def fmt(self) -> str:
        return "<" + "".join(f.fmt for f in self.fields)

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt)

    def pack(self, **values) -> tuple[str, bytes]:
        """(tag, bytes) for the container's section list; every field is checked."""
        self._check(values)
        return self.tag, struct.pack(self.fmt, *(values[f.name] for f in self.fields))

    def unpack(self, sections: dict[str, bytes]) -> dict:
        """{field: value} of this section of a stream, or a one-line BitstreamError."""
        if self.tag not in sections:
            raise BitstreamError(f"corrupted .mscn file (missing section {self.tag})")
        data = sections[self.tag]
        if len(data) != self.size:
            raise BitstreamError(f"corrupted .mscn file ({self.tag} section must be {self.size} bytes)")
        values = dict(zip((f.name for f in self.fields), struct.unpack(self.fmt, data)))
        self._check(values)
        return values

    def describe(self, sections: dict[str, bytes]) -> dict[str, str]:
        """What `mscn info` prints of it ({} when the section is absent or malformed: info never fails)."""
        try:
            values = self.unpack(sections)
        except BitstreamError:
            return {}
        return {f.name: f.show(values[f.name]) for f in self.fields}

    def _check(self, values: dict) -> None:
        for f in self.fields:
            if f.check is not None and (problem := f.check(values[f.name])):
                raise BitstreamError(f"corrupted .mscn file ({self.tag}: {problem})")
