"""Issue -> messages: the MIME message built once per issue (`message`), its wire rules
(`headers`), the per-reader copies (`copies`), the signed links in them (`tokens`), and the
double opt-in email (`confirmation`)."""
