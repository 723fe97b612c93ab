"""The composition root's wiring: each feature's dependencies, built by keyword from the
configuration and what the lifespan opened. Each part hangs on the app's state under its feature's
name (web/parts.py); a service gets only its own part, a unit only values."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from itsdangerous import URLSafeTimedSerializer

from passwordless.admin.service import AdminDeps
from passwordless.clients.catalogue import Catalogue
from passwordless.clients.service import ClientDeps
from passwordless.config.settings import Config, UiSettings
from passwordless.health.service import HealthDeps
from passwordless.keys.signer import Signer
from passwordless.magic_link.service import MagicLinkDeps
from passwordless.mail.render import Templates
from passwordless.oidc.backchannel import Backchannel
from passwordless.oidc.service import OidcDeps
from passwordless.passkeys.service import PasskeyDeps
from passwordless.platform.clock import Clock
from passwordless.platform.crypto import SESSION_COOKIE, subkey
from passwordless.platform.db import Database
from passwordless.platform.db.types import Connection
from passwordless.platform.lifecycle import Lifecycle
from passwordless.platform.metrics import Metrics
from passwordless.platform.migrate import Migration
from passwordless.platform.ratelimit import RateLimiter
from passwordless.sessions.limits import Limits
from passwordless.sessions.service import SessionDeps
from passwordless.webhooks.events import Outbox


@dataclass(frozen=True)
class Opened:
    """What the lifespan opened and started, from which the parts are made."""

    config: Config
    db: Database
    clock: Clock
    lifecycle: Lifecycle
    migrations: tuple[Migration, ...]
    metrics: Metrics
    secret: str  # jwt.secret, or the development secret kept beside the database
    signer: Signer
    templates: Templates
    wake_mail: Callable[[], None]  # tells the mail worker a new email is queued
    outbox: Outbox
    backchannel: Backchannel  # the OIDC provider's back-channel logout: told when sessions end
    count_passkeys: Callable[[Connection, str], int]
    catalogue: Catalogue  # the OIDC clients: the config file's and the admin API's
    keys_needed: Callable[[Sequence[str]], Awaitable[None]]  # makes and publishes the provider's keys


@dataclass(frozen=True)
class Parts:
    config: Config
    db: Database
    clock: Clock
    lifecycle: Lifecycle
    metrics: Metrics
    ui: UiSettings
    sessions: SessionDeps
    magic_link: MagicLinkDeps
    passkeys: PasskeyDeps
    admin: AdminDeps
    health: HealthDeps
    oidc: OidcDeps
    clients: ClientDeps


def build(o: Opened) -> Parts:
    config = o.config
    # Signing in may continue to our own authorization endpoint (and nowhere else new): the
    # hosted pages and the emailed link come back to the authorization request. Allowed even
    # before a client exists: one made through the admin API turns the provider on at once.
    own = config.server.public_url + "/oauth2/authorize"
    config = replace(config, auth=replace(config.auth, allowed_redirects=(*config.auth.allowed_redirects, own)))
    limits = Limits(settings=config.rate_limit, limiter=RateLimiter(), metrics=o.metrics, db=o.db, clock=o.clock)
    sessions = SessionDeps(
        db=o.db, clock=o.clock, signer=o.signer, cookies=cookie_serializer(o.secret), jwt=config.jwt,
        auth=config.auth, outbox=o.outbox, metrics=o.metrics, public_url=config.server.public_url,
        count_passkeys=o.count_passkeys, sessions_ended=o.backchannel.sessions_ended,
    )
    return Parts(
        config=config, db=o.db, clock=o.clock, lifecycle=o.lifecycle, metrics=o.metrics,
        ui=config.ui,
        sessions=sessions,
        magic_link=MagicLinkDeps(
            db=o.db, clock=o.clock, auth=config.auth, rate_limit=config.rate_limit, site_name=config.webauthn.rp_name,
            public_url=config.server.public_url, code_key=o.secret, templates=o.templates, wake_mail=o.wake_mail,
            outbox=o.outbox, metrics=o.metrics, limits=limits, sessions=sessions,
            clients=o.catalogue,
        ),
        passkeys=PasskeyDeps(
            db=o.db, clock=o.clock, webauthn=config.webauthn, public_url=config.server.public_url,
            decoy_key=o.secret, templates=o.templates, wake_mail=o.wake_mail, outbox=o.outbox, metrics=o.metrics,
            limits=limits, sessions=sessions,
        ),
        admin=AdminDeps(
            db=o.db, clock=o.clock, lifecycle=o.lifecycle, outbox=o.outbox, wake_mail=o.wake_mail, limits=limits,
            token=config.admin.token, sessions_ended=o.backchannel.sessions_ended,
        ),
        oidc=OidcDeps(
            db=o.db, clock=o.clock, metrics=o.metrics, settings=config.oidc, clients=o.catalogue,
            issuer=config.server.public_url, backchannel=o.backchannel,
        ),
        health=HealthDeps(
            db=o.db, clock=o.clock, lifecycle=o.lifecycle, migrations=o.migrations, metrics=o.metrics,
            metrics_settings=config.metrics, magic_link_ttl=config.auth.magic_link_ttl,
        ),
        clients=ClientDeps(
            db=o.db, clock=o.clock, catalogue=o.catalogue, production=config.production, keys_needed=o.keys_needed,
        ),
    )


def cookie_serializer(secret: str) -> URLSafeTimedSerializer:
    """Signs with the cookie's own subkey (the last in the list). Cookies signed with jwt.secret
    itself, by versions before subkeys, are still accepted until they expire (jwt.refresh_ttl),
    so the upgrade signs no one out of the hosted pages."""
    return URLSafeTimedSerializer([secret.encode(), subkey(secret, SESSION_COOKIE)], salt="passwordless.session-cookie")
