"""Bounce reports -> suppressed subscribers: where reports land (`mailboxes`), what a report
says (`reports`), and acting on it (`apply`)."""
