"""`newsletter serve`: the reader-facing web endpoints, served by waitress."""

from __future__ import annotations

import click

from newsletter.cli.context import CliContext, pass_context
from newsletter.cli.root import main
from newsletter.web import endpoints as web


@main.command()
@click.option("--host", help="Address to listen on (default: [web] host).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: [web] port).")
@pass_context
def serve(context: CliContext, host: str | None, port: int | None) -> None:
    """Serve unsubscribe, subscribe, confirm and the archive until interrupted."""
    app = context.app()
    application = web.create_app(app)
    host = host or app.settings.web.host
    port = port or app.settings.web.port
    click.echo(f"Serving {app.settings.newsletter.name} on http://{host}:{port} (Ctrl-C stops)")
    web.serve(application, host=host, port=port, proxy_hops=app.settings.web.proxy_hops)
