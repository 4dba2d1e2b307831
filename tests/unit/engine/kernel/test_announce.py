"""The gratuitous ARP frame is an RFC 5227 announcement."""

import ipaddress
import struct

from pipework.engine.kernel.announce import arp_announcement


def test_frame_layout():
    frame = arp_announcement("02:72:6c:cd:9b:8d", ipaddress.IPv4Address("198.18.10.2"))
    assert len(frame) == 42
    dst, src, ethertype = frame[:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    assert dst == b"\xff" * 6
    assert src.hex(":") == "02:72:6c:cd:9b:8d"
    assert ethertype == 0x0806
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    sha, spa, tha, tpa = frame[22:28], frame[28:32], frame[32:38], frame[38:42]
    assert sha == src and tha == b"\0" * 6
    assert spa == tpa == ipaddress.IPv4Address("198.18.10.2").packed
