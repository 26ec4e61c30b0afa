"""SMPP 3.4: the PDU codec (:mod:`smsgate.smpp.pdu`) shared by the provider and the emulator."""
