"""Names and strings from outside iotrace, made safe to show.

A process name is bytes: any byte but NUL, terminal escapes and invalid UTF-8
included (`prctl(PR_SET_NAME, b"\\xff\\x1b[31mx")`). iotrace keeps names as
escaped text, never as raw bytes and never lossily: valid printable UTF-8
stays as it is, a backslash becomes `\\\\`, and every other byte `\\xNN`, so
the original bytes can always be recovered (`unescape_bytes`) and printing a
name can never drive the terminal.

Strings read back from a trace file (which may be crafted) go through
`printable`, which escapes control characters and lone surrogates the same
way but leaves backslashes alone, so an already escaped name stays as it was.
"""

from __future__ import annotations

from typing import Any

# The name escaping lives with the record schema (stdlib only), where TASK
# records' comms are decoded.
from iotrace.events import escape_bytes

__all__ = ["escape_bytes", "printable", "printable_json", "unescape_bytes"]


def _hex(ch: str) -> str:
    return "".join(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))


def unescape_bytes(text: str) -> bytes:
    """The bytes `escape_bytes` was given."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and text[i + 1 : i + 2] == "\\":
            out += b"\\"
            i += 2
        elif ch == "\\" and text[i + 1 : i + 2] == "x":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            out += ch.encode("utf-8")
            i += 1
    return bytes(out)


def printable(text: str) -> str:
    """`text` with control characters, other non-printables and lone surrogates
    escaped; backslashes and printable text unchanged."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(_hex(ch))
    return "".join(out)


def printable_json(value: Any) -> Any:
    """A JSON value with every string in it (keys too) made `printable`."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list):
        return [printable_json(v) for v in value]
    if isinstance(value, dict):
        return {printable(str(k)): printable_json(v) for k, v in value.items()}
    return value
