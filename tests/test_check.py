"""`newsletter check`: one line per finding, against a real relay and real keys.

The relay is aiosmtpd on 127.0.0.1, offering or withholding STARTTLS, SMTPUTF8, PIPELINING
and a SIZE limit; DKIM keys are made by `openssl` for the test.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.smtp_server import Certificate, SmtpServer, make_certificate


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def lines(output: str, topic: str) -> list[str]:
    return [line for line in output.splitlines() if f" {topic}: " in line]


def rsa_key(folder: Path, bits: int) -> Path:
    key = folder / f"dkim-{bits}.pem"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(key), str(bits)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return key


def test_a_ready_setup_passes_with_warnings_only(cli: Cli) -> None:
    result = cli("check")
    assert result.exit_code == 0, result.output
    assert lines(result.output, "base_url") == ["ok      base_url: https://news.example.org"]
    assert lines(result.output, "database")[0].startswith("ok ")
    assert lines(result.output, "templates")[0].startswith(("ok ", "warning "))
    assert "0 error(s)" in result.output
    assert "test-secret-key" not in result.output  # a secret is never printed


def test_each_error_is_one_line_with_what_to_do_and_exit_1(cli: Cli, tmp_path: Path) -> None:
    result = cli(
        "check",
        env={
            "NEWSLETTER_NEWSLETTER_BASE_URL": "http://news.example.org",
            "NEWSLETTER_SECRET_KEY": "",
            "NEWSLETTER_DELIVERY_BOUNCE_DOMAIN": "example.org",
            "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
            "NEWSLETTER_FEEDS_MAX_ARTICLES": "40",
        },
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "is not https" in lines(result.output, "base_url")[0]
    assert "NEWSLETTER_SECRET_KEY is not set" in lines(result.output, "secret key")[0]
    assert "is the From domain" in lines(result.output, "bounce domain")[0]
    assert "run `newsletter init`" in lines(result.output, "database")[0]
    assert "above the 102 KB at which Gmail clips" in lines(result.output, "templates")[0]
    for line in result.output.splitlines()[:-1]:
        assert line.split()[0] in {"ok", "warning", "error"}, line


def test_a_short_secret_key_is_one_line_without_the_key(cli: Cli) -> None:
    result = cli("check", env={"NEWSLETTER_SECRET_KEY": "too-short-a-key"})
    assert result.exit_code == 1
    assert "at least 32 bytes" in result.output
    assert "too-short-a-key" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_unsubscribe_mailto_is_reported_as_chosen_or_default(cli: Cli) -> None:
    default = lines(cli("check").output, "unsubscribe mailto")
    assert default[0].startswith("warning unsubscribe mailto: unsubscribe@example.org by default")
    chosen = cli("check", env={"NEWSLETTER_DELIVERY_UNSUBSCRIBE_MAILTO": "leave@example.org"})
    assert lines(chosen.output, "unsubscribe mailto") == [
        "ok      unsubscribe mailto: leave@example.org ([delivery] unsubscribe_mailto)"
    ]


def test_templates_that_do_not_compile_or_are_misplaced(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    (folder / "email").mkdir(parents=True)
    (folder / "email" / "_footer.mjml.j2").write_text("{% if %}", encoding="utf-8")
    (folder / "roundup.txt.j2").write_text("misplaced", encoding="utf-8")
    result = cli("check", env={"NEWSLETTER_NEWSLETTER_TEMPLATES_DIR": str(folder)})
    assert result.exit_code == 1
    found = lines(result.output, "templates")
    assert "_footer.mjml.j2, line 1" in found[0]
    assert "roundup.txt.j2 overrides nothing" in found[1]


def test_dkim_key_size_and_the_record_to_publish(cli: Cli, tmp_path: Path) -> None:
    env = {
        "NEWSLETTER_DELIVERY_DKIM_SELECTOR": "news",
        "NEWSLETTER_DELIVERY_DKIM_DOMAIN": "example.org",
    }
    strong = rsa_key(tmp_path, 2048)
    result = cli("check", env={**env, "NEWSLETTER_DKIM_PRIVATE_KEY": str(strong)})
    (line,) = lines(result.output, "dkim")
    assert line.startswith("ok      dkim: 2048-bit key; publish this TXT record at ")
    assert "news._domainkey.example.org: v=DKIM1; k=rsa; p=" in line
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(strong), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    assert line.endswith("p=" + base64.b64encode(public).decode())

    weak = cli("check", env={**env, "NEWSLETTER_DKIM_PRIVATE_KEY": str(rsa_key(tmp_path, 1024))})
    assert lines(weak.output, "dkim")[0] == "warning dkim: the key has 1024 bits; 2048 is advised"
    assert weak.exit_code == 0

    broken = tmp_path / "not-a-key.pem"
    broken.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    bad = cli("check", env={**env, "NEWSLETTER_DKIM_PRIVATE_KEY": str(broken)})
    assert lines(bad.output, "dkim") == [
        "error   dkim: NEWSLETTER_DKIM_PRIVATE_KEY is not a PEM RSA private key"
    ]
    assert bad.exit_code == 1


@pytest.mark.parametrize(
    ("offers", "expected"),
    [
        ({}, ["ok ", "STARTTLS", "SMTPUTF8", "PIPELINING", "SIZE 33554432 bytes"]),
        ({"smtputf8": False}, ["warning ", "no SMTPUTF8"]),
        ({"pipelining": False}, ["warning ", "no PIPELINING"]),
        ({"size_limit": 20_000}, ["error ", "SIZE 20000 bytes is below"]),
        ({"tls": False}, ["error ", "does not offer STARTTLS"]),
    ],
    ids=["everything", "no-smtputf8", "no-pipelining", "small-size", "no-starttls"],
)
def test_the_relay_is_asked_what_it_offers(
    cli: Cli, certificate: Certificate, offers: dict[str, object], expected: list[str]
) -> None:
    options = dict(offers)  # the parameter is shared by both database runs
    tls = bool(options.pop("tls", True))
    with SmtpServer(certificate=certificate if tls else None, **options) as server:  # type: ignore[arg-type]
        result = cli(
            "check",
            env={
                "NEWSLETTER_DELIVERY_TRANSPORT": server.url("smtp+starttls"),
                "SSL_CERT_FILE": str(certificate.cert),  # trust the test's own certificate
            },
        )
    found = "\n".join(lines(result.output, "transport"))
    level, *words = expected
    assert any(line.startswith(level) for line in found.splitlines()), found
    for word in words:
        assert word in found, found
    assert server.received == []  # nothing was sent
    assert result.exit_code == (1 if level == "error " else 0), result.output
