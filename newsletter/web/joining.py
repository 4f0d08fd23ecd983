"""`/subscribe` and `/confirm/TOKEN`: ask for newsletters and sections, then confirm.

The form offers every newsletter with the sections it carries; the request makes each
chosen subscription pending, and the emailed link makes them active. What a request gets
back never depends on whether the address is already on the list.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import flask
from werkzeug.datastructures import MultiDict

from newsletter.errors import DeliveryError, InputError
from newsletter.mail.tokens import InvalidToken
from newsletter.subscribers import membership
from newsletter.web.pages import ERROR_TEXT, Site

log = logging.getLogger(__name__)

HONEYPOT_FIELD = "website"
CHALLENGE_FIELD = "form"
# Present in a form that shows the newsletter checkboxes: with none of them ticked, the
# reader is asked to tick one. A form without it (an older copy of the snippet) asks for
# the default newsletter.
CHOICE_FIELD = "choosing"


def section_field(slug: str) -> str:
    return f"sections-{slug}"


@dataclass(frozen=True)
class Echo:
    """What the reader sent, given back so a typo costs one correction, not a form."""

    form: Mapping[str, str]
    chosen: Sequence[str]
    sections: Mapping[str, Sequence[str]]


class Joining:
    def __init__(self, site: Site) -> None:
        self.site = site

    def _offered(self, featured: str) -> list[dict[str, Any]]:
        """Every newsletter, the page's own first."""
        settings = self.site.app.settings
        slugs = sorted(settings.slugs, key=lambda slug: slug != featured)
        return [
            {
                "slug": slug,
                "name": settings.for_newsletter(slug).newsletter.name,
                "sections": settings.for_newsletter(slug).sections,
                "field": section_field(slug),
            }
            for slug in slugs
        ]

    def form_page(self) -> flask.Response:
        slug = flask.request.args.get("newsletter")
        newsletter = self.site.newsletter(slug)
        return self._form(200, Echo({}, [newsletter.slug], {}))

    def _form(
        self,
        status: int,
        echo: Echo,
        *,
        error: str = "",
        step: membership.SignupResult | None = None,
    ) -> flask.Response:
        keys = self.site.keys
        now = self.site.app.clock.now()
        # The page's own newsletter is its subject, named and not a box to tick; the others
        # are offered unticked (STANDARDS 52: no pre-ticked boxes), or as the reader left them.
        featured = echo.chosen[0] if echo.chosen else self.site.default.slug
        challenge = keys.default.form_challenge(now)
        wait = 0
        if step is not None and step.unchallenged is membership.Unchallenged.TOO_SOON:
            # The form just sent still counts once old enough: give it back, with how long.
            challenge = flask.request.form.get(CHALLENGE_FIELD, challenge)
            wait = max(1, math.ceil(step.retry_after.total_seconds()))
        return self.site.page(
            "subscribe",
            status,
            form=echo.form,
            error=error,
            step=step.unchallenged.name if step is not None and step.unchallenged else "",
            wait=wait,
            min_age=int(membership.FORM_MIN_AGE.total_seconds()),
            max_hours=int(membership.FORM_MAX_AGE.total_seconds() // 3600),
            offered=self._offered(featured),
            featured=featured,
            names=membership.consent_names(self.site.app.settings),
            chosen=list(echo.chosen),
            sections={slug: list(values) for slug, values in echo.sections.items()},
            choice_field=CHOICE_FIELD,
            honeypot=HONEYPOT_FIELD,
            challenge_field=CHALLENGE_FIELD,
            challenge=challenge,
        )

    def subscribe(self) -> flask.Response:
        form = flask.request.form
        newsletters, sections = self._choices(form)
        echo = Echo(_echo(form), newsletters, sections)
        try:
            result = membership.request_subscription(
                self.site.app,
                self.site.keys,
                self.site.templates,
                membership.Request(
                    email=form.get("email", ""),
                    name=form.get("name", ""),
                    ip=flask.request.remote_addr or "",
                    honeypot=form.get(HONEYPOT_FIELD, ""),
                    challenge=form.get(CHALLENGE_FIELD, ""),
                    newsletters=newsletters,
                    sections=sections,
                ),
            )
        except InputError as error:
            return self._form(400, echo, error=error.message)
        except DeliveryError as error:
            log.error("confirmation not sent: %s", error)
            return self.site.error(503, "Please try again later")
        if result.answer is membership.Answer.UNCHALLENGED:
            return self._form(200, echo, step=result)
        if result.answer is not membership.Answer.ACCEPTED:
            response = self.site.error(429, "Too many requests")
            response.headers["Retry-After"] = str(int(result.retry_after.total_seconds()) + 1)
            return response
        return self.site.page("subscribed", confirm_hours=self.site.app.settings.web.confirm_hours)

    def _choices(self, form: MultiDict[str, str]) -> tuple[list[str], dict[str, list[str]]]:
        """The newsletters and sections posted; the default newsletter for a form that
        offered no choice."""
        settings = self.site.app.settings
        newsletters = [slug[:40] for slug in form.getlist("newsletter")][: len(settings.slugs) + 1]
        if not newsletters and CHOICE_FIELD not in form:
            newsletters = [self.site.default.slug]
        sections = {
            slug: form.getlist(section_field(slug))[:50]
            for slug in settings.slugs
            if section_field(slug) in form
        }
        return newsletters, sections

    def confirm_page(self, token: str) -> flask.Response:
        try:
            reader = membership.check_confirmation(self.site.app, self.site.keys, token)
        except InvalidToken as error:
            return self.site.not_valid(error)
        return self._confirmation("confirm", reader)

    def confirm(self, token: str) -> flask.Response:
        try:
            reader = membership.confirm(self.site.app, self.site.keys, token)
        except InvalidToken as error:
            return self.site.not_valid(error)
        if reader.status.suppressed:
            return self.site.error(404, "This address has left the list", ERROR_TEXT[410])
        return self._confirmation("confirmed", reader)

    def _confirmation(self, name: str, reader: membership.Reader) -> flask.Response:
        names = self.site.names(reader.joined)
        return self.site.page(
            name, newsletter=self.site.newsletter(reader.newsletter), reader=reader, names=names
        )


def _echo(form: Mapping[str, str]) -> dict[str, str]:
    """The typed fields, cut to the lengths the form allows."""
    return {"email": form.get("email", "")[:320], "name": form.get("name", "")[:200]}
