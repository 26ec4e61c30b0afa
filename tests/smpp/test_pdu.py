"""The SMPP 3.4 PDU codec and the text layout of short messages.

Byte layouts are checked against the specification's field order and against smpplib's encoder
(an independent implementation) where it has the command.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgate.encoding import segments
from smsgate.errors import InvalidMessage
from smsgate.smpp import pdu as p


def roundtrip(pdu: p.Pdu) -> p.Pdu:
    return p.decode(p.encode(pdu))


@pytest.mark.parametrize(
    "command",
    [p.Command.BIND_TRANSCEIVER, p.Command.BIND_TRANSMITTER, p.Command.BIND_RECEIVER],
)
def test_binds_roundtrip_with_the_specified_layout(command: p.Command) -> None:
    bind = p.Pdu(
        command,
        7,
        fields={
            "system_id": "acme",
            "password": "pw",
            "system_type": "VMA",
            "interface_version": 0x34,
        },
    )
    wire = p.encode(bind)
    assert wire[:16] == p.HEADER.pack(len(wire), command, 0, 7)
    assert wire[16:] == b"acme\x00pw\x00VMA\x00\x34\x00\x00\x00"
    assert roundtrip(bind).fields == {
        "system_id": "acme",
        "password": "pw",
        "system_type": "VMA",
        "interface_version": 0x34,
        "addr_ton": 0,
        "addr_npi": 0,
        "address_range": "",
    }


def test_bind_matches_smpplib_byte_for_byte() -> None:
    command = pytest.importorskip("smpplib.command", reason="smpplib is not installed")
    theirs = command.BindTransceiver(
        "bind_transceiver", sequence=3, system_id="acme", password="pw", interface_version=0x34
    ).generate()
    ours = p.encode(
        p.Pdu(
            p.Command.BIND_TRANSCEIVER,
            int.from_bytes(theirs[12:16], "big"),  # as smpplib wrote it
            fields={"system_id": "acme", "password": "pw", "interface_version": 0x34},
        )
    )
    assert ours == theirs


def test_submit_sm_with_tlvs_roundtrips() -> None:
    submit = p.Pdu(
        p.Command.SUBMIT_SM,
        42,
        fields={
            "source_addr_ton": 5,
            "source_addr": "MyApp",
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": "4915112345678",
            "registered_delivery": 1,
            "data_coding": 8,
            "short_message": "Ж".encode("utf-16-be"),
        },
        tlvs={
            p.Tag.SAR_MSG_REF_NUM: 0x1234,
            p.Tag.SAR_TOTAL_SEGMENTS: 3,
            p.Tag.SAR_SEGMENT_SEQNUM: 2,
            p.Tag.MESSAGE_PAYLOAD: b"\x00\x01",
            0x1401: b"vendor",
        },
    )
    back = roundtrip(submit)
    assert back.fields["destination_addr"] == "4915112345678"
    assert back.fields["short_message"] == b"\x04\x16"
    assert back.tlvs == submit.tlvs
    wire = p.encode(submit)
    assert b"\x02\x0c\x00\x02\x12\x34" in wire  # sar_msg_ref_num: tag, length 2, value
    assert b"\x14\x01\x00\x06vendor" in wire  # unknown tags kept as octets


def test_receipt_tlvs_are_typed() -> None:
    receipt = p.Pdu(
        p.Command.DELIVER_SM,
        fields={"esm_class": p.ESM_RECEIPT, "short_message": b"id:1 stat:DELIVRD"},
        tlvs={
            p.Tag.RECEIPTED_MESSAGE_ID: "1A2B",
            p.Tag.MESSAGE_STATE: p.MessageState.DELIVERED,
            p.Tag.NETWORK_ERROR_CODE: b"\x03\x00\x01",
        },
    )
    back = roundtrip(receipt)
    assert back.tlvs[p.Tag.RECEIPTED_MESSAGE_ID] == "1A2B"
    assert back.tlvs[p.Tag.MESSAGE_STATE] == 2
    assert back.to_dict()["tlvs"]["network_error_code"] == "030001"


@pytest.mark.parametrize(
    "command",
    [
        p.Command.ENQUIRE_LINK,
        p.Command.ENQUIRE_LINK_RESP,
        p.Command.UNBIND,
        p.Command.UNBIND_RESP,
        p.Command.GENERIC_NACK,
    ],
)
def test_bodiless_commands_are_sixteen_octets(command: p.Command) -> None:
    wire = p.encode(p.Pdu(command, 9))
    assert len(wire) == 16 and roundtrip(p.Pdu(command, 9)).command == command


def test_responses_and_error_responses() -> None:
    submit = p.Pdu(p.Command.SUBMIT_SM, 5)
    ok = roundtrip(submit.response(message_id="abc"))
    assert (ok.command, ok.sequence, ok.get("message_id")) == (p.Command.SUBMIT_SM_RESP, 5, "abc")
    with_tlv = roundtrip(p.Pdu(p.Command.SUBMIT_SM_RESP, 6, 0, {"message_id": "x"}, {0x1401: b"v"}))
    assert with_tlv.get("message_id") == "x" and with_tlv.tlvs == {0x1401: b"v"}
    refused = p.encode(submit.response(p.Status.ESME_RTHROTTLED))
    assert len(refused) == 16  # an error response carries no body
    assert p.decode(refused).status == p.Status.ESME_RTHROTTLED


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (b"\x00\x00\x00\x10", p.Status.ESME_RINVCMDLEN),
        (p.HEADER.pack(20, p.Command.SUBMIT_SM, 0, 1), p.Status.ESME_RINVCMDLEN),
        (p.HEADER.pack(17, p.Command.BIND_TRANSCEIVER, 0, 1) + b"x", p.Status.ESME_RINVPARLEN),
        (p.HEADER.pack(16, p.Command.SUBMIT_SM, 0, 1), p.Status.ESME_RINVCMDLEN),
    ],
)
def test_malformed_pdus_name_the_status_to_answer(wire: bytes, status: int) -> None:
    with pytest.raises(p.PduError) as info:
        p.decode(wire)
    assert info.value.status == status


def test_field_limits_are_enforced() -> None:
    with pytest.raises(p.PduError, match="system_id"):
        p.encode(p.Pdu(p.Command.BIND_TRANSCEIVER, fields={"system_id": "x" * 16}))
    with pytest.raises(p.PduError, match="message_payload"):
        p.encode(p.Pdu(p.Command.SUBMIT_SM, fields={"short_message": b"x" * 255}))


def test_frames_split_a_stream_and_keep_a_partial_pdu() -> None:
    a = p.encode(p.Pdu(p.Command.ENQUIRE_LINK, 1))
    b = p.encode(p.Pdu(p.Command.SUBMIT_SM, 2, fields={"short_message": b"hi"}))
    buffer = bytearray(a + b + b[:5])
    assert list(p.frames(buffer)) == [a, b]
    assert bytes(buffer) == b[:5]
    buffer += b[5:]
    assert list(p.frames(buffer)) == [b] and not buffer
    with pytest.raises(p.PduError):
        list(p.frames(bytearray(b"\x00\x00\x00\x05....")))


def test_status_names() -> None:
    assert p.status_name(0x58) == "ESME_RTHROTTLED"
    assert p.status_name(0x0401) == "vendor-specific 0x0401"
    assert p.status_name(0x99) == "reserved 0x0099"


# -- text ---------------------------------------------------------------------------------------


def test_coding_choice() -> None:
    assert p.choose_coding("Hello {world}") == p.DC_DEFAULT
    assert p.choose_coding("Grüße ½") == p.DC_UCS2
    assert p.choose_coding("Grüße ½", latin1=True) == p.DC_LATIN1
    assert p.choose_coding("Ж", latin1=True) == p.DC_UCS2


def test_gsm7_unpacked_is_one_septet_per_octet_with_escapes() -> None:
    [part] = p.layout("a{€", coding=p.DC_DEFAULT)
    assert part.short_message == b"a\x1b\x28\x1b\x65" and part.esm_class == 0


def test_gsm7_packed_uses_the_encoders_packing() -> None:
    [part] = p.layout("hellohello", coding=p.DC_DEFAULT, packed=True)
    # The worked example of 3GPP TS 23.038 6.1.2.1.1.
    assert part.short_message.hex().upper() == "E8329BFD4697D9EC37"


def test_udh8_parts_follow_the_encoders_split() -> None:
    text = "x" * 300 + "€"
    parts = p.layout(text, coding=p.DC_DEFAULT, reference=0xAB)
    assert len(parts) == segments(text).segments == 2
    assert [part.short_message[:6] for part in parts] == [
        b"\x05\x00\x03\xab\x02\x01",
        b"\x05\x00\x03\xab\x02\x02",
    ]
    assert all(part.esm_class == p.ESM_UDHI for part in parts)


def test_udh16_parts_carry_a_sixteen_bit_reference() -> None:
    parts = p.layout("Ж" * 140, coding=p.DC_UCS2, mode="udh16", reference=0x1234)
    assert [part.short_message[:7] for part in parts] == [
        b"\x06\x08\x04\x12\x34\x03\x01",
        b"\x06\x08\x04\x12\x34\x03\x02",
        b"\x06\x08\x04\x12\x34\x03\x03",
    ]
    assert [len(part.short_message) - 7 for part in parts] == [132, 132, 16]  # 66 units a part


def test_a_part_never_splits_an_escape_or_a_surrogate_pair() -> None:
    text = "x" * 151 + "€" + "y" * 10
    parts = p.layout(text, coding=p.DC_DEFAULT, mode="udh16")
    assert parts[0].short_message[-1] != 0x1B
    emoji = "a" + "😀" * 80
    for part in p.layout(emoji, coding=p.DC_UCS2, mode="udh16"):
        assert not 0xD8 <= part.short_message[-2] <= 0xDB


def test_sar_parts_carry_tlvs_and_no_udh() -> None:
    parts = p.layout("z" * 200, coding=p.DC_DEFAULT, mode="sar", reference=777)
    assert [part.tlvs for part in parts] == [
        {p.Tag.SAR_MSG_REF_NUM: 777, p.Tag.SAR_TOTAL_SEGMENTS: 2, p.Tag.SAR_SEGMENT_SEQNUM: 1},
        {p.Tag.SAR_MSG_REF_NUM: 777, p.Tag.SAR_TOTAL_SEGMENTS: 2, p.Tag.SAR_SEGMENT_SEQNUM: 2},
    ]
    assert parts[0].short_message == b"z" * 153 and parts[0].esm_class == 0


def test_payload_mode_puts_a_long_text_in_one_pdu() -> None:
    [short] = p.layout("short", coding=p.DC_DEFAULT, mode="payload")
    assert short.short_message == b"short" and not short.tlvs
    [long] = p.layout("Ж" * 500, coding=p.DC_UCS2, mode="payload")
    assert long.short_message == b"" and len(long.tlvs[p.Tag.MESSAGE_PAYLOAD]) == 1000


def test_latin1_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(InvalidMessage, match="Latin-1"):
        p.layout("Ж", coding=p.DC_LATIN1)


def test_more_than_255_parts_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="255"):
        p.layout("x" * 153 * 256, coding=p.DC_DEFAULT)


def _read(part: p.Part, coding: int, packed: bool) -> p.Text:
    pdu = p.Pdu(
        p.Command.DELIVER_SM,
        fields={
            "short_message": part.short_message,
            "esm_class": part.esm_class,
            "data_coding": coding,
        },
        tlvs=dict(part.tlvs),
    )
    return p.read_text(roundtrip(pdu), packed=packed)


GSM_TEXT = st.text(
    alphabet=st.sampled_from("abcXYZ 019@£$€{}[]~^\\|\nñÄöüΔΩ"), min_size=1, max_size=500
)


@settings(max_examples=60, deadline=None)
@given(
    text=GSM_TEXT,
    mode=st.sampled_from(p.LONG_MODES),
    packed=st.booleans(),
    reference=st.integers(0, 255),
)
def test_gsm7_layout_reads_back(text: str, mode: p.LongMode, packed: bool, reference: int) -> None:
    # Packed GSM-7 cannot tell a final "@" from padding when the septets fill the last octet.
    if packed and text.endswith("@"):
        text += "."
    parts = p.layout(text, coding=p.DC_DEFAULT, mode=mode, packed=packed, reference=reference)
    read = [_read(part, p.DC_DEFAULT, packed) for part in parts]
    assert "".join(r.text for r in read) == text
    if len(parts) > 1:
        assert {r.reference for r in read} == {reference} and read[-1].sequence == len(parts)


@settings(max_examples=40, deadline=None)
@given(text=st.text(min_size=1, max_size=300), mode=st.sampled_from(p.LONG_MODES))
def test_ucs2_layout_reads_back(text: str, mode: p.LongMode) -> None:
    parts = p.layout(text, coding=p.DC_UCS2, mode=mode, reference=300)
    assert "".join(_read(part, p.DC_UCS2, False).text for part in parts) == text


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(min_size=1, max_size=400),
    mode=st.sampled_from(p.LONG_MODES),
    source=st.sampled_from(["Acme", "4915112345678", "x" * 20]),
    delivery=st.sampled_from([0, 1]),
)
def test_submit_template_writes_what_the_encoder_writes(
    text: str, mode: p.LongMode, source: str, delivery: int
) -> None:
    coding = p.choose_coding(text)
    template = p.SubmitTemplate(
        source_addr=source,
        source_addr_ton=5,
        source_addr_npi=0,
        dest_addr_ton=1,
        dest_addr_npi=1,
        registered_delivery=delivery,
    )
    for part in p.layout(text, coding=coding, mode=mode, reference=77):
        fields = {
            "source_addr_ton": 5,
            "source_addr_npi": 0,
            "source_addr": source,
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": "4915112345678",
            "esm_class": part.esm_class,
            "registered_delivery": delivery,
            "data_coding": coding,
            "short_message": part.short_message,
        }
        expected = p.encode(p.Pdu(p.Command.SUBMIT_SM, 9, fields=fields, tlvs=dict(part.tlvs)))
        body = template.body("4915112345678", part, coding)
        assert p.encode(p.Pdu(p.Command.SUBMIT_SM, 9, body=body)) == expected


def test_submit_template_enforces_the_field_limits() -> None:
    with pytest.raises(p.PduError, match="source_addr is 21 octets"):
        p.SubmitTemplate(
            source_addr="1" * 21,
            source_addr_ton=1,
            source_addr_npi=1,
            dest_addr_ton=1,
            dest_addr_npi=1,
            registered_delivery=1,
        )
    template = p.SubmitTemplate(
        source_addr="Acme",
        source_addr_ton=5,
        source_addr_npi=0,
        dest_addr_ton=1,
        dest_addr_npi=1,
        registered_delivery=1,
    )
    with pytest.raises(p.PduError, match="destination_addr is 21 octets"):
        template.body("1" * 21, p.Part(b"hi", 0, {}), 0)
    with pytest.raises(p.PduError, match="short_message is 255 octets"):
        template.body("4915112345678", p.Part(b"x" * 255, 0, {}), 0)
