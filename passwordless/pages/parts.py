"""The parts of the app's dependencies the hosted pages use (see web/parts.py)."""

from __future__ import annotations

from starlette.requests import Request

from passwordless.clients.service import ClientDeps
from passwordless.config.settings import UiSettings
from passwordless.magic_link.service import MagicLinkDeps
from passwordless.passkeys.service import PasskeyDeps
from passwordless.web.parts import part


def ui_of(request: Request) -> UiSettings:
    return part(request, "ui", UiSettings)


def magic_link_of(request: Request) -> MagicLinkDeps:
    return part(request, "magic_link", MagicLinkDeps)


def passkeys_of(request: Request) -> PasskeyDeps:
    return part(request, "passkeys", PasskeyDeps)


def clients_of(request: Request) -> ClientDeps:
    return part(request, "clients", ClientDeps)
