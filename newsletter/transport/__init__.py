"""Ledger -> the wire: one small interface (`base`), an SMTP client (`smtp`), an outbox folder
of .eml files (`outbox`), and the kinds of failure a delivery attempt can end in (`failures`)."""
