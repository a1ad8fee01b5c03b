"""Protocol 2.0 framing of the bus emulator, against dynamixel-sdk's own routines."""

import random

import dynamixel_sdk as dxl
import pytest

from dclaw.protocol2 import (
    HEADER,
    CorruptPacket,
    Instruction,
    Packet,
    PacketParser,
    build_packet,
    crc16,
    fast_status_packet,
    status_packet,
    stuff,
    unstuff,
)

SDK = dxl.PacketHandler(2.0)
# ROBOTIS' own example: Write 1 to Torque Enable (64) of ID 1.
TORQUE_ON_ID1 = bytes.fromhex("FF FF FD 00 01 06 00 03 40 00 01 DB 66")


@pytest.mark.parametrize("length", [0, 1, 7, 64, 300])
def test_crc_matches_the_sdk(length):
    data = random.Random(length).randbytes(length)
    assert crc16(data) == SDK.updateCRC(0, list(data), length)
    half = length // 2
    assert crc16(data[half:], crc16(data[:half])) == crc16(data)  # a running CRC


def test_build_packet_matches_the_e_manual_example():
    assert build_packet(1, Instruction.WRITE, bytes([64, 0, 1])) == TORQUE_ON_ID1


@pytest.mark.parametrize("body", [
    b"", b"\xff\xff\xfd", b"\x55\x00\xff\xff\xfd\xff", b"\xff\xff\xfd\xfd", b"\xff\xff\xff\xfd",
    b"\xff\xff\xfd\xff\xff\xfd\x00", bytes(range(250, 256)) * 3,
])
def test_stuffing_round_trips_and_matches_the_sdk(body):
    stuffed = stuff(body)
    assert unstuff(stuffed) == body
    assert b"\xff\xff\xfd" not in stuffed.replace(b"\xff\xff\xfd\xfd", b"")
    # The SDK stuffs a whole packet in place: header, ID, LEN, then INST + params + CRC.
    packet = [0xFF, 0xFF, 0xFD, 0x00, 1, (len(body) + 3) & 0xFF, (len(body) + 3) >> 8, 0x03,
              *body, 0, 0]
    sdk = SDK.addStuffing(packet)
    assert bytes(sdk[8:-2]) == stuffed


def test_random_bodies_round_trip():
    rng = random.Random(0)
    for _ in range(500):
        body = bytes(rng.choice(b"\xff\xfd\x00") for _ in range(rng.randrange(12)))
        assert unstuff(stuff(body)) == body


class FakePort:
    """Just enough of a PortHandler for the SDK's rxPacket."""

    def __init__(self, data: bytes):
        self.data, self.is_using = bytearray(data), True

    def readPort(self, length):
        out, self.data = bytes(self.data[:length]), self.data[length:]
        return list(out)

    def isPacketTimeout(self):
        return True


def test_status_packets_are_read_by_the_sdk_with_stuffing_removed():
    params = b"\xff\xff\xfd\xff"
    packet, result = SDK.rxPacket(FakePort(status_packet(11, 0x80, params)), False)
    assert result == dxl.COMM_SUCCESS
    assert packet[4] == 11 and packet[8] == 0x80 and bytes(packet[9:13]) == params


def test_fast_status_packet_is_read_by_the_sdk():
    blocks = [(10, 0, b"\x01\x02\x03\x04"), (11, 0x80, b"\x05\x06\x07\x08")]
    port = FakePort(fast_status_packet(blocks, [4, 4]))
    data, result, _ = SDK.fastSyncReadRx(port, dxl.BROADCAST_ID, 2 * (4 + 4))
    assert result == dxl.COMM_SUCCESS
    assert data[0:6] == [0, 10, 1, 2, 3, 4] and data[8:14] == [0x80, 11, 5, 6, 7, 8]


def test_parser_splits_a_stream_and_unstuffs_parameters():
    write = build_packet(10, Instruction.WRITE, b"\x14\x00\xff\xff\xfd\xff")
    stream = b"\x00garbage\xff\xff" + TORQUE_ON_ID1 + b"\xfd\x00" + write
    parser = PacketParser()
    found = [p for byte in stream for p in parser.feed(bytes([byte]))]  # one byte at a time
    assert found == [Packet(1, Instruction.WRITE, b"\x40\x00\x01", len(TORQUE_ON_ID1)),
                     Packet(10, Instruction.WRITE, b"\x14\x00\xff\xff\xfd\xff", len(write))]
    assert parser.pending == 0


def test_parser_reports_a_bad_crc_and_finds_the_next_packet():
    bad = bytearray(TORQUE_ON_ID1)
    bad[-1] ^= 1
    found = PacketParser().feed(bytes(bad) + TORQUE_ON_ID1)
    assert found == [CorruptPacket(1, Instruction.WRITE, len(bad)),
                     Packet(1, Instruction.WRITE, b"\x40\x00\x01", len(TORQUE_ON_ID1))]


def test_parser_keeps_a_partial_header_and_gives_up_a_packet_that_never_ends():
    parser = PacketParser()
    assert parser.feed(b"junk\xff\xff\xfd") == [] and parser.pending == 3
    assert parser.feed(b"\x00\x01\xff\x00") == []  # LEN 255: waits for the rest
    assert parser.feed(TORQUE_ON_ID1) == []  # swallowed by the pending packet, for now
    assert parser.resync() == [Packet(1, Instruction.WRITE, b"\x40\x00\x01", 13)]
    assert parser.pending == 0


def test_parser_skips_a_header_with_an_impossible_length():
    assert PacketParser().feed(HEADER + b"\x01\x01\x00" + TORQUE_ON_ID1)[0].motor_id == 1
