"""The nftables ruleset generation: NFT_MSG_GETGEN's bytes, and its answer parsed."""

from __future__ import annotations

import socket
import struct

import pytest

from pipework.engine.kernel import nftables


def _answer(*attrs: bytes, header: bytes = struct.pack("!BBH", 0, 0, 7)) -> bytes:
    return header + b"".join(attrs)


def _attr(kind: int, payload: bytes) -> bytes:
    padded = payload + b"\0" * (-len(payload) % 4)
    return struct.pack("=HH", 4 + len(payload), kind) + padded


def test_request_is_an_nfgenmsg_for_any_family():
    assert nftables.request_body() == bytes([socket.AF_UNSPEC, 0, 0, 0])
    assert nftables.NFNL_SUBSYS_NFTABLES << 8 | nftables.NFT_MSG_GETGEN == 0x0A10


def test_generation_is_read_big_endian_among_other_attributes():
    payload = _answer(
        _attr(2, struct.pack("!I", 1234)),  # NFTA_GEN_PROC_PID
        _attr(nftables.NFTA_GEN_ID, struct.pack("!I", 0x01020304)),
        _attr(3, b"nft\0"),  # NFTA_GEN_PROC_NAME
    )
    assert nftables.parse_generation(payload) == 0x01020304


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\0\0",  # shorter than an nfgenmsg
        _answer(),  # no attributes
        _answer(_attr(2, struct.pack("!I", 5))),  # no NFTA_GEN_ID
        _answer(_attr(nftables.NFTA_GEN_ID, b"\1\2")),  # the wrong length
        _answer(struct.pack("=HH", 2, 1)),  # an attribute shorter than its header
    ],
)
def test_a_malformed_answer_has_no_generation(payload):
    assert nftables.parse_generation(payload) is None


def test_cookie():
    assert nftables.parse_cookie(struct.pack("=Q", 4096)) == 4096
    assert nftables.parse_cookie(struct.pack("=Q", 0)) is None
    assert nftables.parse_cookie(b"\1\2\3\4") is None


def test_no_generation_when_the_kernel_cannot_be_asked(monkeypatch):
    def refuse(*_args: object) -> socket.socket:
        raise OSError(93, "Protocol not supported")

    monkeypatch.setattr(nftables, "socket_in_netns", refuse)
    assert nftables.generation(None) is None
    monkeypatch.setattr(nftables, "BOOT_ID", "/nonexistent/boot_id")
    assert nftables.generation(None) is None
