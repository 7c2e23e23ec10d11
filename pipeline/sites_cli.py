"""`lorechat sites`: register the sites that embed the widget, their origins, creators and daily budget."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from backend.errors import ErrorCode, LorechatError
from backend.settings import get_settings
from pipeline.terminal import dumps, safe

if TYPE_CHECKING:
    from backend.curation.sites_store import SiteView

_NAME = "a-z, 0-9 and '-', starting with a letter or digit, at most 64 characters"


def _site_json(site: SiteView) -> dict[str, Any]:
    return {
        "name": site.name,
        "origins": site.origins,
        "creators": site.creators,
        "daily_limit": site.daily_limit,
        "requests_today": site.requests_today,
        "refused_today": site.refused_today,
        "requests_total": site.requests_total,
        "created_at": site.created_at.isoformat(),
        "has_key": site.has_key,
    }


def _valid_name(name: str) -> bool:
    from backend.ids import is_slug

    return is_slug(name)


def _check_name(name: str) -> str:
    if not _valid_name(name):
        raise click.BadParameter(f"{name!r}: a site name uses {_NAME}", param_hint="NAME")
    return name


def _check_creators(creators: tuple[str, ...]) -> list[str]:
    from pipeline.creators import SLUG

    for creator in creators:
        if not SLUG.fullmatch(creator):
            raise click.BadParameter(f"{creator!r} is not a creator slug (a-z, 0-9 and '-')", param_hint="--creator")
    return sorted(set(creators))


@click.group()
def sites() -> None:
    """Sites that embed the widget: `<lorechat-widget site="NAME">` is accepted only from the site's origins,
    for its creators, within its daily budget. See docs/curation.md for what this does and does not protect."""


@sites.command("add")
@click.argument("name")
@click.option(
    "--origin",
    "origins",
    multiple=True,
    required=True,
    metavar="URL",
    help="An origin the site's pages are served from, e.g. https://blog.example.com (repeatable).",
)
@click.option(
    "--creator",
    "creators",
    multiple=True,
    metavar="SLUG",
    help="A creator the site may ask (repeatable; default: every creator).",
)
@click.option(
    "--daily-limit",
    type=click.IntRange(min=0),
    default=None,
    help="Chat requests per UTC day for this site (default: no budget of its own).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the site as JSON.")
def add(name: str, origins: tuple[str, ...], creators: tuple[str, ...], daily_limit: int | None, as_json: bool) -> None:
    """Register site NAME."""  # fmt: skip
    from backend.curation import sites_store
    from backend.curation.origins import OriginError, normalize_origin
    from pipeline.curator_db import with_sessions

    _check_name(name)
    slugs = _check_creators(creators)
    try:
        normalized = sorted({normalize_origin(origin) for origin in origins})
    except OriginError as exc:  # the one parser (C2); storage checks again, by the same function
        raise click.BadParameter(str(exc), param_hint="--origin") from exc
    settings = get_settings()
    site = with_sessions(
        settings,
        lambda sessions: sites_store.add_site(
            sessions, name=name, origins=normalized, creators=slugs, daily_limit=daily_limit
        ),
    )
    if as_json:
        click.echo(dumps(_site_json(site)))
        return
    click.echo(f"Added site {safe(name)}: {safe(', '.join(site.origins))}")
    cors = settings.server.cors_origins
    missing = [origin for origin in site.origins if origin not in cors and "*" not in cors]
    if missing:
        click.echo(
            f"note: add {safe(', '.join(missing))} to server.cors_origins so browsers may call the API", err=True
        )


@sites.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the sites as a JSON array.")
def list_(as_json: bool) -> None:
    """List sites with today's usage."""
    from backend.curation import sites_store
    from pipeline.curator_db import with_sessions

    rows = with_sessions(get_settings(), sites_store.list_sites)
    if as_json:
        click.echo(dumps([_site_json(site) for site in rows]))
        return
    if not rows:
        click.echo("No sites registered: `lorechat sites add NAME --origin https://…`.", err=True)
    for site in rows:
        budget = (
            f"{site.requests_today}/{site.daily_limit}" if site.daily_limit is not None else f"{site.requests_today}"
        )
        creators = ", ".join(site.creators) or "every creator"
        # Each field inert (C1): names, origins and creators were typed by someone, maybe long ago.
        click.echo(
            f"{safe(site.name)}  {safe(' '.join(site.origins))}  [{safe(creators)}]  today {budget}"
            f" (refused {site.refused_today})"
        )


@sites.command("key")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the site and its key as JSON.")
def key(name: str, as_json: bool) -> None:
    """Make a key for site NAME: agents call the MCP server (/mcp) with `Authorization: Bearer KEY` as that site,
    within its creators and daily budget. Shown once, stored hashed; running it again replaces the key."""
    from backend.curation import sites_store
    from backend.curation.sites import new_site_key
    from pipeline.curator_db import with_sessions

    secret, key_hash = new_site_key(name)
    stored = _valid_name(name) and with_sessions(
        get_settings(), lambda sessions: sites_store.set_site_key(sessions, name=name, key_hash=key_hash)
    )
    if not stored:
        raise LorechatError(ErrorCode.not_found, f"no site named '{name}'")
    if as_json:
        click.echo(dumps({"site": name, "key": secret}))
        return
    click.echo(secret)
    click.echo(
        f"Key of site {safe(name)}, shown once: give it to the agent with the MCP URL (docs/deployment.md, Agents).",
        err=True,
    )


@sites.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Remove site NAME (requests naming it are refused from then on)."""
    from backend.curation import sites_store
    from pipeline.curator_db import with_sessions

    # A name `add` would refuse was never stored: not looked up (bad bytes from argv never reach the database).
    removed = _valid_name(name) and with_sessions(
        get_settings(), lambda sessions: sites_store.remove_site(sessions, name=name)
    )
    if not removed:
        raise LorechatError(ErrorCode.not_found, f"no site named '{name}'")
    click.echo(f"Removed site {safe(name)}.", err=True)
