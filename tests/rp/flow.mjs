// One OpenID Connect sign-in by an independent relying party: panva's openid-client 6 (OpenID
// Certified), used only through its documented API. Driven by tests/support/relying_parties.py.
//
// Settings come from the environment:
//   OIDC_ISSUER         the provider's issuer (passwordless's server.public_url)
//   OIDC_CLIENT_ID      the client's id
//   OIDC_CLIENT_SECRET  its secret; absent or empty for a public client (authenticates with "none")
//   OIDC_AUTH_METHOD    client_secret_basic (the default with a secret) or client_secret_post
//   OIDC_REDIRECT_URI   the redirect URI registered for the client
//   OIDC_SCOPE          e.g. "openid email offline_access"
//   OIDC_POST_LOGOUT_REDIRECT_URI  optional, for the end-session URL
//   OIDC_EXTRA_PARAMS   optional JSON object of more authorization parameters (login_hint, prompt...)
//
// It prints one JSON line per step on stdout: {"step": "discovery"}, {"step": "authorize", "url"}
// then reads the URL the browser was redirected to (one line on stdin) and goes on: "token",
// "userinfo", "refresh", "revoke" (checked by introspection when the client has a secret),
// "logout", and finally {"step": "done"}. On any failure it prints
// {"step": <the step>, "error": {...}} and exits 1.

import * as client from "openid-client";
import { createInterface } from "node:readline";

const env = process.env;
let step = "settings";

function say(fields) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");
}

function need(name) {
  if (!env[name]) throw new Error(`${name} is not set`);
  return env[name];
}

function header(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[0], "base64url").toString("utf8"));
}

function clientAuthentication(secret) {
  if (!secret) return client.None();
  const method = env.OIDC_AUTH_METHOD || "client_secret_basic";
  if (method === "client_secret_basic") return client.ClientSecretBasic(secret);
  if (method === "client_secret_post") return client.ClientSecretPost(secret);
  throw new Error(`OIDC_AUTH_METHOD ${method} is not one this script knows`);
}

async function readLine() {
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim()) {
      lines.close();
      return line.trim();
    }
  }
  throw new Error("stdin closed before the callback URL came");
}

async function main() {
  const issuer = new URL(need("OIDC_ISSUER"));
  const clientId = need("OIDC_CLIENT_ID");
  const secret = env.OIDC_CLIENT_SECRET || "";
  const redirectUri = need("OIDC_REDIRECT_URI");
  const scope = need("OIDC_SCOPE");
  const extra = JSON.parse(env.OIDC_EXTRA_PARAMS || "{}");

  step = "discovery";
  // http://localhost is refused unless this is said explicitly (tests only: never in production).
  const config = await client.discovery(issuer, clientId, secret || undefined, clientAuthentication(secret), {
    execute: [client.allowInsecureRequests],
  });
  const metadata = config.serverMetadata();
  say({ issuer: metadata.issuer, metadata });

  step = "authorize";
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    ...extra,
    redirect_uri: redirectUri,
    scope,
    state,
    nonce,
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: "S256",
  });
  say({ url: url.href, state, nonce });

  step = "callback";
  const callback = new URL(await readLine());
  say({ url: callback.href });

  step = "token";
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: codeVerifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  say({
    claims,
    id_token: tokens.id_token,
    id_token_header: header(tokens.id_token),
    access_token: tokens.access_token,
    access_token_header: header(tokens.access_token),
    token_type: tokens.token_type,
    expires_in: tokens.expiresIn(),
    scope: tokens.scope,
    has_refresh_token: Boolean(tokens.refresh_token),
  });

  step = "userinfo";
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  say({ userinfo });

  step = "refresh";
  let refreshToken = tokens.refresh_token;
  if (refreshToken) {
    const refreshed = await client.refreshTokenGrant(config, refreshToken);
    say({
      refreshed: true,
      rotated: Boolean(refreshed.refresh_token) && refreshed.refresh_token !== refreshToken,
      claims: refreshed.id_token ? refreshed.claims() : null,
      has_access_token: Boolean(refreshed.access_token),
    });
    refreshToken = refreshed.refresh_token || refreshToken;
  } else {
    say({ refreshed: false, reason: "the token response had no refresh_token" });
  }

  step = "revoke";
  // RFC 7009, then RFC 7662 (a confidential client) to see that it took: introspection rather than
  // presenting the revoked token again, which a provider may rightly treat as token theft.
  const [token, hint] = refreshToken ? [refreshToken, "refresh_token"] : [tokens.access_token, "access_token"];
  const active = async () => (await client.tokenIntrospection(config, token, { token_type_hint: hint })).active;
  const before = secret ? await active() : null;
  await client.tokenRevocation(config, token, { token_type_hint: hint });
  const after = secret ? await active() : null;
  if (secret && !(before === true && after === false)) {
    throw new Error(`introspection said active ${before} before the revocation and ${after} after it`);
  }
  say({ revoked: hint, active_before: before, active_after: after });

  step = "logout";
  const logout = {
    id_token_hint: tokens.id_token,
    state: client.randomState(),
    client_id: clientId,
  };
  if (env.OIDC_POST_LOGOUT_REDIRECT_URI) logout.post_logout_redirect_uri = env.OIDC_POST_LOGOUT_REDIRECT_URI;
  say({ url: client.buildEndSessionUrl(config, logout).href, state: logout.state });

  step = "done";
  say({});
}

main().catch((error) => {
  say({
    error: {
      name: error.name,
      message: error.message,
      code: error.code,
      error: error.error,
      error_description: error.error_description,
      status: error.status,
      cause: error.cause === undefined ? undefined : String(error.cause?.message ?? error.cause),
    },
  });
  process.exit(1);
});
