"""Dynamixel Protocol 2.0 framing, shared by the runner's Dynamixel backend and the bus emulator:
CRC-16, byte stuffing, packets.

An instruction packet on the wire is `FF FF FD 00 | ID | LEN_L LEN_H | INST | PARAMS | CRC_L CRC_H`
where LEN counts INST, PARAMS and CRC, and the CRC (CRC-16/BUYPASS: polynomial 0x8005, not
reflected, initial value 0) covers every byte before it. Whoever sends a packet stuffs it: any
`FF FF FD` inside INST + PARAMS becomes `FF FF FD FD`, so the header never appears inside a packet;
the CRC is computed over the stuffed bytes. A status packet has instruction 0x55 and an error byte
before its parameters.

Fast Sync Read / Fast Bulk Read answer with one packet for all motors: after the header, with ID
0xFE, come one `ERR | ID | DATA | CRC` block per motor, each CRC a running CRC of every byte before
it, so the last block's CRC is the packet's. Those packets are not stuffed (dynamixel-sdk 4.1.0
reads them by position, without unstuffing).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

HEADER = b"\xff\xff\xfd\x00"
BROADCAST_ID = 0xFE
MAX_ID = 0xFC
MAX_LENGTH = 1024  # the LEN field of the longest packet we accept (the SDK's buffer size)
_STUFF_FROM = b"\xff\xff\xfd"
_STUFF_TO = b"\xff\xff\xfd\xfd"


class Instruction(IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    CLEAR = 0x10
    CONTROL_TABLE_BACKUP = 0x20
    STATUS = 0x55
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83
    FAST_SYNC_READ = 0x8A
    BULK_READ = 0x92
    BULK_WRITE = 0x93
    FAST_BULK_READ = 0x9A


class ErrorCode(IntEnum):
    """The low 7 bits of a status packet's error byte."""

    OK = 0
    RESULT_FAIL = 1
    INSTRUCTION = 2
    CRC = 3
    DATA_RANGE = 4
    DATA_LENGTH = 5
    DATA_LIMIT = 6
    ACCESS = 7


ALERT_BIT = 0x80  # set in the error byte while the motor has a hardware error latched


def _make_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc16(data: bytes | bytearray, crc: int = 0) -> int:
    """The protocol's CRC-16 of `data`, continuing from `crc` (a running CRC)."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) ^ table[((crc >> 8) ^ byte) & 0xFF]) & 0xFFFF
    return crc


def stuff(body: bytes) -> bytes:
    """Adds the stuffing byte after every `FF FF FD` (the pattern cannot overlap itself)."""
    return body.replace(_STUFF_FROM, _STUFF_TO)


def unstuff(body: bytes) -> bytes:
    return body.replace(_STUFF_TO, _STUFF_FROM)


def build_packet(motor_id: int, instruction: int, params: bytes = b"") -> bytes:
    """A complete, stuffed packet with its CRC."""
    body = stuff(bytes((instruction,)) + params)
    packet = HEADER + bytes((motor_id,)) + (len(body) + 2).to_bytes(2, "little") + body
    return packet + crc16(packet).to_bytes(2, "little")


def status_packet(motor_id: int, error: int, params: bytes = b"") -> bytes:
    return build_packet(motor_id, Instruction.STATUS, bytes((error,)) + params)


def fast_status_packet(blocks: list[tuple[int, int, bytes]], lengths: list[int]) -> bytes:
    """The Fast Sync/Bulk Read answer; blocks are (id, error, data) in request order.

    LEN announces a block for every requested data length in `lengths`, so a reply that lacks a
    motor (silent, absent) arrives short, as on a real bus where that motor's slot stays empty.
    """
    length = 1 + sum(4 + size for size in lengths)
    packet = bytearray(HEADER + bytes((BROADCAST_ID,)) + length.to_bytes(2, "little"))
    packet.append(Instruction.STATUS)
    crc = crc16(packet)
    for motor_id, error, data in blocks:
        block = bytes((error, motor_id)) + data
        crc = crc16(block, crc)
        tail = crc.to_bytes(2, "little")
        packet += block + tail
        crc = crc16(tail, crc)
    return bytes(packet)


@dataclass(frozen=True, slots=True)
class Packet:
    """An instruction packet as received: parameters unstuffed, `wire_bytes` as sent."""

    motor_id: int
    instruction: int
    params: bytes
    wire_bytes: int


@dataclass(frozen=True, slots=True)
class CorruptPacket:
    """A complete packet whose CRC did not match (its ID and instruction may be wrong too)."""

    motor_id: int
    instruction: int
    wire_bytes: int


class PacketParser:
    """Cuts a byte stream into packets, resynchronising on the header after garbage or a bad CRC.

    A bad CRC drops only the header, then the search resumes inside that packet: stuffing
    guarantees that a valid packet never contains the header, so none is lost to a false start.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back: a partial packet (or a partial header) waiting for the rest."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet | CorruptPacket]:
        buf = self._buf
        buf += data
        found: list[Packet | CorruptPacket] = []
        while True:
            start = buf.find(HEADER)
            if start < 0:
                _keep_header_prefix(buf)
                return found
            if start:
                del buf[:start]
            if len(buf) < 7:
                return found
            length = buf[5] | buf[6] << 8
            if length < 3 or length > MAX_LENGTH:
                del buf[:1]
                continue
            total = 7 + length
            if len(buf) < total:
                return found
            crc = buf[total - 2] | buf[total - 1] << 8
            if crc16(buf[: total - 2]) != crc:
                found.append(CorruptPacket(buf[4], buf[7], total))
                del buf[: len(HEADER)]
                continue
            found.append(Packet(buf[4], buf[7], unstuff(bytes(buf[8 : total - 2])), total))
            del buf[:total]

    def resync(self) -> list[Packet | CorruptPacket]:
        """Gives up on the partial packet held (its rest never came) and scans past its start."""
        if self._buf:
            del self._buf[:1]
        return self.feed(b"")


def _keep_header_prefix(buf: bytearray) -> None:
    """Drops all of `buf` but a tail that could be the start of a header."""
    for keep in (3, 2, 1):
        if len(buf) >= keep and buf[-keep:] == HEADER[:keep]:
            del buf[:-keep]
            return
    buf.clear()
