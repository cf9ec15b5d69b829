"""Hostile and broken submissions made from a good one: the zips that crashed or fooled the validator."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable

import nbformat


def patch_member(
    data: bytes,
    member: str,
    *,
    method: int | None = None,
    flag_bits: int | None = None,
    size: int | None = None,
) -> bytes:
    """``data`` (a zip, no zip64) with ``member``'s compression method, flag bits or uncompressed size
    rewritten in both of its headers."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(member)
    local = info.header_offset
    assert out[local : local + 4] == b"PK\x03\x04"
    central = out.find(b"PK\x01\x02")
    while central >= 0:
        name_length = struct.unpack_from("<H", out, central + 28)[0]
        if out[central + 46 : central + 46 + name_length] == member.encode():
            break
        central = out.find(b"PK\x01\x02", central + 4)
    assert central >= 0
    # (local header offset, central header offset, format) of each field
    for value, local_at, central_at, form in (
        (flag_bits, 6, 8, "<H"),
        (method, 8, 10, "<H"),
        (size, 22, 24, "<I"),
    ):
        if value is not None:
            struct.pack_into(form, out, local + local_at, value)
            struct.pack_into(form, out, central + central_at, value)
    return bytes(out)


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def bomb_member(name: str, size: int) -> bytes:
    """A zip whose one member ``name`` inflates to ``size`` zero bytes (a multiple of 1 MiB; at most 4 GiB),
    about 1,000 times smaller: the same fully flushed deflate block repeated, written without inflating."""
    chunk = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH) == block  # history-free
    stream = block * (size >> 20) + compressor.flush()
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(chunk, crc)
    encoded = name.encode()
    local = struct.pack(
        "<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(stream), size, len(encoded), 0
    )
    central = struct.pack(
        "<4s6H3I5H2I",
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        0x21,
        crc,
        len(stream),
        size,
        len(encoded),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    body = local + encoded + stream
    directory = central + encoded
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 1, 1, len(directory), len(body), 0)
    return body + directory + end


def edited(nb: nbformat.NotebookNode, change: Callable[[nbformat.NotebookNode], None]) -> bytes:
    copy = nbformat.reads(nbformat.writes(nb), as_version=4)
    change(copy)
    return nbformat.writes(copy, version=4).encode()


def deep_expression(terms: int = 100_000) -> str:
    """A cell Python parses into a tree too deep for ast's recursion (brackets stop at 200 levels)."""
    return "x = " + " + ".join(["1"] * terms) + "\nprint(x)"


def strip_figures(nb: nbformat.NotebookNode) -> None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                o
                for o in cell.get("outputs", [])
                if not any(k.startswith("image/") for k in o.get("data", {}))
            ]


def strip_all_but_prints(nb: nbformat.NotebookNode) -> None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if o.get("output_type") == "stream"]


# a 1x1 PNG, what a saved figure output looks like to the rules
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def with_figure(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with a plotting cell and its saved figure appended."""
    from nbformat.v4 import new_code_cell, new_output

    counts = [c.execution_count for c in nb.cells if c.cell_type == "code" and c.execution_count]
    cell = new_code_cell(
        "plot_curves(fit_result.history)\nplt.show()",
        execution_count=max(counts, default=0) + 1,
        outputs=[new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure size 640x480>"})],
    )
    cell.id = "figure-cell"
    nb.cells.append(cell)
    return nb
