"""The OpenID Connect provider (OIDC.md): Authlib's server components on our units and pages."""
