"""Every setting, declared once. The declaration drives parsing, environment overrides,
validation, `check-config` and `config.example.toml` (see config_load.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from passwordless.config.kinds import (
    Boolean,
    Choice,
    DatabaseUrl,
    Duration,
    Integer,
    Kind,
    Network,
    OrDefault,
    OrEmpty,
    Rate,
    RateKind,
    Text,
    TextList,
    Url,
)

HOSTNAME = r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
WEBHOOK_EVENTS = (
    "user.created",
    "user.deleted",
    "login.succeeded",
    "passkey.registered",
    "sessions.revoked",
)


@dataclass(frozen=True)
class Setting:
    kind: Kind[Any]
    doc: str
    env: str | None
    secret: bool
    example: object  # shown commented out where the default is empty or derived
    key: str | None  # the TOML key, where it differs from the field name


def setting(
    default: object,
    kind: Kind[Any],
    doc: str,
    *,
    env: str | None = None,
    secret: bool = False,
    example: object = None,
    key: str | None = None,
) -> Any:
    """A field of a settings section. The default is given in its TOML form."""
    meta = Setting(kind, doc, env, secret, example, key)
    return field(default=kind.parse(default), metadata={"setting": meta})


def section(cls: type[Any]) -> Any:
    return field(default_factory=cls, metadata={"section": cls})


@dataclass(frozen=True)
class ServerSettings:
    host: str = setting("0.0.0.0", Text("a host name or IP address"), "Address to listen on.", env="HOST")
    port: int = setting(3000, Integer(1, 65535), "Port to listen on.", env="PORT")
    public_url: str = setting(
        "", OrEmpty(Url()), "Public base URL; every link is built from it. Default: http://localhost:{port}.",
        env="PUBLIC_URL", example="https://auth.example.com",
    )
    trusted_proxies: tuple[str, ...] = setting(
        [], TextList(Network()), "Proxies whose X-Forwarded-For is believed (IPs or networks).",
        env="TRUSTED_PROXIES",
    )
    max_body_bytes: int = setting(65536, Integer(1024, 16 * 1024 * 1024), "Largest request body accepted.")
    max_connections: int = setting(
        1000, Integer(1, 1_000_000),
        "Open connections and requests at once; beyond it new requests get 503 (put a reverse proxy in front).",
    )
    drain_delay: float = setting(
        "3s", Duration(), "After SIGTERM, /readiness answers 503 this long before the server stops.",
        env="DRAIN_DELAY",
    )


@dataclass(frozen=True)
class DatabaseSettings:
    path: str = setting("./data/auth.db", Text("a file path"), "The SQLite database file.", env="DATABASE_PATH")
    url: str = setting(
        "", OrEmpty(DatabaseUrl()),
        "PostgreSQL instead of SQLite, for more than one server: postgresql://user:password@host:5432/database"
        " (docs/postgres.md). check-config masks the password.",
        env="DATABASE_URL", example="postgresql://passwordless:secret@db.internal:5432/passwordless",
    )
    pool_size: int = setting(10, Integer(1, 1000), "PostgreSQL connections per server process.")


@dataclass(frozen=True)
class JwtSettings:
    secret: str = setting(
        "", Text(), "The secret every server key is derived from (HS256 tokens, one-time codes, cookies); 32+ characters. Generated in development.",
        env="JWT_SECRET", secret=True, example="change-me-to-at-least-32-random-characters",
    )
    algorithm: str = setting("HS256", Choice("HS256", "ES256", "EdDSA"), "Access token signature.", env="JWT_ALGORITHM")
    audience: str = setting("passwordless", Text(), "The `aud` claim of access tokens.")
    access_ttl: float = setting("15m", Duration(), "Lifetime of an access token.")
    refresh_ttl: float = setting("30d", Duration(), "Lifetime of a session and its refresh token.")


@dataclass(frozen=True)
class AuthSettings:
    magic_link_ttl: float = setting("15m", Duration(), "Lifetime of an emailed link and code.")
    code_max_attempts: int = setting(5, Integer(1, 100), "Wrong codes that burn a sign-in ticket.")
    allow_signup: bool = setting(True, Boolean(), "Create a user at the first sign-in of an unknown email.")
    reauth_window: float = setting(
        "10m", Duration(), "Adding a passkey needs a sign-in this recent (a refresh does not count)."
    )
    allowed_redirects: tuple[str, ...] = setting(
        [], TextList(Url()), "Allowed redirect_to prefixes. Default: [public_url + \"/\"].",
        example=["https://app.example.com/"],
    )


@dataclass(frozen=True)
class WebauthnSettings:
    rp_id: str = setting(
        "", OrEmpty(Text("a domain name", pattern=HOSTNAME)), "Relying party ID. Default: the host of public_url.",
        env="WEBAUTHN_RP_ID", example="example.com",
    )
    rp_name: str = setting("passwordless", Text(), "Name browsers show for this site.")
    origins: tuple[str, ...] = setting(
        [], TextList(Url(origin_only=True)), "Origins passkeys may be used from. Default: [public_url].",
        env="WEBAUTHN_ORIGIN", example=["https://auth.example.com"],
    )
    user_verification: str = setting(
        "preferred", Choice("required", "preferred", "discouraged"), "Ask the authenticator for a PIN or biometric."
    )
    resident_key: str = setting(
        "preferred", Choice("required", "preferred"), "Ask for a discoverable passkey (sign-in without a username)."
    )
    challenge_ttl: float = setting("5m", Duration(), "Lifetime of a passkey challenge.")
    max_passkeys: int = setting(20, Integer(1, 1000), "Passkeys one user may hold (one more is 409 passkey_limit).")


@dataclass(frozen=True)
class SmtpSettings:
    host: str = setting("localhost", Text("a host name"), "SMTP server.", env="SMTP_HOST")
    port: int = setting(587, Integer(1, 65535), "SMTP port.", env="SMTP_PORT")
    username: str = setting("", Text(), "SMTP user name.", env="SMTP_USERNAME", example="mailer")
    password: str = setting("", Text(), "SMTP password.", env="SMTP_PASSWORD", secret=True, example="change-me")
    security: str = setting("starttls", Choice("starttls", "tls", "none"), "Connection security.", env="SMTP_SECURITY")
    timeout: float = setting("30s", Duration(), "Time allowed for one SMTP exchange.")


@dataclass(frozen=True)
class EmailSettings:
    transport: str = setting(
        "console", Choice("console", "smtp", "file"), "How email leaves: console (development), smtp or file.",
        env="EMAIL_TRANSPORT",
    )
    file_dir: str = setting(
        "", Text("a folder path"), "Where the file transport writes .eml files. Default: outbox/ beside the database.",
        env="EMAIL_FILE_DIR", example="/var/lib/passwordless/outbox",
    )
    from_address: str = setting(
        "passwordless <noreply@localhost>",
        Text(
            'an address such as "Example <auth@example.com>" (the name may be any text, the address ASCII)',
            r"[^\r\n<>]*<[!-~]+@[!-~]+>|[!-~]+@[!-~]+",
        ),
        "The From header.", env="EMAIL_FROM", key="from",
    )
    templates_dir: str = setting(
        "", Text("a folder path"), "Folder of templates that replace the built-in ones.", example="./templates"
    )
    max_attempts: int = setting(8, Integer(1, 100), "Attempts before an email is marked dead.")
    retry_initial: float = setting("10s", Duration(), "First retry delay (doubles, with jitter).")
    retry_max: float = setting("1h", Duration(), "Longest retry delay.")
    lease: float = setting("2m", Duration(), "A row left `sending` by a crash is retaken after this.")
    concurrency: int = setting(4, Integer(1, 64), "Messages in flight at once.")
    keep_sent: float = setting("7d", Duration(), "How long sent and dead rows are kept.")
    smtp: SmtpSettings = section(SmtpSettings)


@dataclass(frozen=True)
class RateLimitSettings:
    enabled: bool = setting(True, Boolean(), "Turn rate limiting on or off.")
    magic_link_per_email: Rate = setting("5/15m", RateKind(), "Sign-in emails per address.")
    magic_link_per_ip: Rate = setting("30/1m", RateKind(), "Sign-in emails per client IP (IPv6: per /64).")
    verify_per_ip: Rate = setting("60/1m", RateKind(), "Link and code verifications per client IP.")
    passkey_per_ip: Rate = setting(
        "60/1m", RateKind(), "Passkey sign-in options and verifications (together) per client IP."
    )


@dataclass(frozen=True)
class CorsSettings:
    allowed_origins: tuple[str, ...] = setting(
        [], TextList(Url(origin_only=True)), "Origins allowed to call the API from a browser.",
        env="CORS_ALLOWED_ORIGINS", example=["https://app.example.com"],
    )
    allow_all: bool = setting(False, Boolean(), "Allow every origin (refused in production).")


@dataclass(frozen=True)
class AdminSettings:
    token: str = setting(
        "", Text(), "Bearer token of the admin API (32+ characters); empty turns the admin API off.",
        env="ADMIN_TOKEN", secret=True, example="change-me-to-at-least-32-random-characters",
    )


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = setting(True, Boolean(), "Serve Prometheus metrics on /metrics.")
    token: str = setting(
        "", Text(), "Bearer token required by /metrics (32+ characters in production); empty means none.",
        env="METRICS_TOKEN", secret=True, example="change-me-to-at-least-32-random-characters",
    )


@dataclass(frozen=True)
class LogSettings:
    level: str = setting("info", Choice("debug", "info", "warning", "error"), "Log level.", env="LOG_LEVEL")
    format: str = setting("text", Choice("text", "json"), "text, or json: one object per line.", env="LOG_FORMAT")


@dataclass(frozen=True)
class UiSettings:
    product_name: str = setting("", Text(), "Name shown on the hosted pages. Default: webauthn.rp_name.", example="Example")
    accent_color: str = setting(
        "#2b59c3", Text('a colour like "#2b59c3"', pattern=r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?"),
        "Accent colour of the hosted pages.",
    )
    logo_url: str = setting(
        "", OrEmpty(Url()), "Logo shown above the hosted pages (https URL).", example="https://example.com/logo.svg"
    )
    support_email: str = setting(
        "", Text("an email address", pattern=r"[^\s@<>\"]+@[^\s@<>\"]+"), "Address shown to people who need help.",
        example="help@example.com",
    )


@dataclass(frozen=True)
class RetentionSettings:
    audit_log: float = setting("365d", Duration(), "How long audit rows are kept.")


@dataclass(frozen=True)
class WebhookSettings:
    url: str = setting("", OrEmpty(Url()), "Where events are POSTed.", example="https://app.example.com/hooks/auth")
    secret: str = setting(
        "", Text("a secret like whsec_<base64>", pattern=r"whsec_[A-Za-z0-9+/=]{16,}"),
        "Signing secret (Standard Webhooks).", secret=True, example="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    events: tuple[str, ...] = setting(
        [], TextList(Choice(*WEBHOOK_EVENTS)), "Events to send; empty means all.",
        example=["user.created", "login.succeeded"],
    )


OIDC_SCOPES = ("openid", "email", "groups", "offline_access")
OIDC_ALGORITHMS = ("RS256", "ES256", "EdDSA")
CLIENT_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"


@dataclass(frozen=True)
class OidcClientSettings:
    id: str = setting(
        "", Text("a client id (letters, digits, . _ -; up to 64)", pattern=CLIENT_ID), "The client_id.",
        example="grafana",
    )
    name: str = setting("", Text(), "Name shown on the consent page. Default: the id.", example="Grafana")
    secret: str = setting(
        "", Text(), "Client secret of a confidential client (32+ characters in production); env OIDC_CLIENT_<ID>_SECRET.",
        secret=True, example="change-me-to-at-least-32-random-characters",
    )
    secret_sha256: str = setting(
        "", Text("64 hex digits", pattern=r"[0-9a-fA-F]{64}"), "The SHA-256 of the secret instead of the secret.",
        example="5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
    )
    redirect_uris: tuple[str, ...] = setting(
        [], TextList(Url()), "Where authorization answers may go (exact match).",
        example=["https://grafana.example.com/login/generic_oauth"],
    )
    post_logout_redirect_uris: tuple[str, ...] = setting(
        [], TextList(Url()), "Where RP-initiated logout may return to (exact match).",
        example=["https://grafana.example.com/login"],
    )
    backchannel_logout_uri: str = setting(
        "", OrEmpty(Url()), "Back-channel logout receiver.", example="https://grafana.example.com/logout/backchannel"
    )
    public: bool = setting(False, Boolean(), "A public client (no secret; PKCE required).")
    require_pkce: bool = setting(True, Boolean(), "Require PKCE S256 (a public client always does).")
    skip_consent: bool = setting(False, Boolean(), "A first-party app: no consent page.")
    scopes: tuple[str, ...] = setting(
        list(OIDC_SCOPES), TextList(Choice(*OIDC_SCOPES)), "The scopes it may ask for."
    )
    allowed_emails: tuple[str, ...] = setting(
        [], TextList(Text("an address or *@domain")), "Who may use it (\"*@example.com\" patterns); empty: everyone.",
        example=["*@example.com", "ada@partner.org"],
    )
    allowed_groups: tuple[str, ...] = setting(
        [], TextList(Text()), "Groups of which a user needs one; empty: no group needed.", example=["grafana-users"]
    )
    id_token_signed_response_alg: str = setting(
        "RS256", Choice(*OIDC_ALGORITHMS), "Signature of its ID and access tokens."
    )


@dataclass(frozen=True)
class OidcSettings:
    code_ttl: float = setting("60s", Duration(), "Lifetime of an authorization code.")
    id_token_ttl: float = setting("1h", Duration(), "Lifetime of an ID token.")
    access_ttl: float = setting(
        "", OrDefault(Duration()), "Lifetime of an OIDC access token. Default: jwt.access_ttl.", example="15m"
    )
    refresh_ttl: float = setting(
        "", OrDefault(Duration()), "Lifetime of an OIDC refresh token. Default: jwt.refresh_ttl.", example="30d"
    )
    clients: tuple[OidcClientSettings, ...] = field(default=(), metadata={"table_array": OidcClientSettings})


@dataclass(frozen=True)
class Config:
    environment: str = setting(
        "development", Choice("development", "production"),
        "development, or production: refuses insecure settings.", env="ENVIRONMENT",
    )
    server: ServerSettings = section(ServerSettings)
    database: DatabaseSettings = section(DatabaseSettings)
    jwt: JwtSettings = section(JwtSettings)
    auth: AuthSettings = section(AuthSettings)
    webauthn: WebauthnSettings = section(WebauthnSettings)
    email: EmailSettings = section(EmailSettings)
    rate_limit: RateLimitSettings = section(RateLimitSettings)
    cors: CorsSettings = section(CorsSettings)
    admin: AdminSettings = section(AdminSettings)
    metrics: MetricsSettings = section(MetricsSettings)
    log: LogSettings = section(LogSettings)
    ui: UiSettings = section(UiSettings)
    retention: RetentionSettings = section(RetentionSettings)
    webhooks: tuple[WebhookSettings, ...] = field(default=(), metadata={"table_array": WebhookSettings})
    oidc: OidcSettings = section(OidcSettings)

    @property
    def production(self) -> bool:
        return self.environment == "production"
