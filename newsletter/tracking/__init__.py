"""Engagement, told honestly: which stories were read, by people rather than machines.

In: the `[tracking]` settings, an issue's week and article ids (to sign the `/c/` and `/o/`
links once per render), and every request to those links (token, method, user agent, IP
address, time). Out: the links themselves, the stored article URL to redirect to, click
counts per issue and article split into human and machine (and, in `per-reader` mode only,
one event per reader's click, deleted after `retention_days`), and the report's figures.
Nothing here changes a subscription.
"""
