"""Image type and dimensions from the header bytes alone.

Pillow is not installed on the test machines, and the tests only need what a
XEP-0084 <info/> carries: the MIME type (sniffed, never trusted from a label)
and width/height when the format makes them cheap to read.
"""

import struct


def sniff(data):
    """MIME type from the magic bytes, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _jpeg_size(data):
    # Walk the marker segments up to the first start-of-frame (SOF0..SOF15 except DHT/JPG/DAC).
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def dimensions(data):
    """(width, height) for PNG, GIF and baseline/progressive JPEG; None otherwise."""
    kind = sniff(data)
    try:
        if kind == "image/png" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if kind == "image/gif":
            return struct.unpack("<HH", data[6:10])
        if kind == "image/jpeg":
            return _jpeg_size(data)
    except struct.error:  # truncated header: report unknown rather than fail the command
        return None
    return None


def image_info(data):
    """The facts a test compares: sniffed type, byte count, SHA-1 left to the caller, dimensions."""
    dims = dimensions(data)
    return {
        "sniffed": sniff(data),
        "bytes": len(data),
        "width": dims[0] if dims else None,
        "height": dims[1] if dims else None,
    }
