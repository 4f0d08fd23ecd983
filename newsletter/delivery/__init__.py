"""Messages -> ledger: a send (`send`), its per-recipient ledger (`ledger`), the connections
that work it (`workers`), its pace (`rate`, `rate_share`), what it is asked and what it
reports (`options`), and the figures of past sends (`stats`)."""
