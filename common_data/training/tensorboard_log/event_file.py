"""A TensorBoard event file of scalars, in the standard library only.

The file (events.out.tfevents.TIME.HOST...) is a TFRecord stream: each record is its length (uint64, little-endian),
the masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the data. The data is an Event protocol
buffer (tensorflow/core/util/event.proto): wall_time (field 1, double), step (2, int64), and either file_version
(3, string; the first record, "brain.Event:2") or a Summary (5) holding one Value (1) with a tag (1, string) and a
simple_value (2, float).
"""
import os
import socket
import struct
import time
from pathlib import Path

FILE_VERSION = "brain.Event:2"
CRC32C_POLYNOMIAL = 0x82F63B78  # Castagnoli, reflected


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ CRC32C_POLYNOMIAL if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(value):
    out = bytearray()
    value &= 0xFFFFFFFFFFFFFFFF  # int64 as protobuf encodes it (negative: ten bytes)
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def length_delimited(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def event_bytes(wall_time, step, file_version=None, tag=None, value=None):
    """An Event message: the file version, or one scalar summary."""
    message = varint(1 << 3 | 1) + struct.pack("<d", wall_time) + varint(2 << 3 | 0) + varint(step)
    if file_version is not None:
        return message + length_delimited(3, file_version.encode())
    summary_value = length_delimited(1, tag.encode()) + varint(2 << 3 | 5) + struct.pack("<f", value)
    return message + length_delimited(5, length_delimited(1, summary_value))


def record_bytes(data):
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


class EventFileWriter:
    """Scalars into a new event file in `logdir`, each record flushed as it is written."""

    def __init__(self, logdir):
        Path(logdir).mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = Path(logdir) / f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
        self.handle = open(self.path, "ab")
        self._write(event_bytes(now, 0, file_version=FILE_VERSION))

    def add_scalar(self, tag, value, step, wall_time=None):
        self._write(event_bytes(time.time() if wall_time is None else wall_time, step, tag=tag, value=float(value)))

    def _write(self, data):
        self.handle.write(record_bytes(data))
        self.handle.flush()

    def close(self):
        self.handle.close()
