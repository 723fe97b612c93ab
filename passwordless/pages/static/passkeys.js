// Passkeys for the hosted pages: a small, dependency-free wrapper around WebAuthn.
// window.Passkeys = { supported, conditionalAvailable, register, signIn }.
(function (global) {
  "use strict";

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromBase64url(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    const raw = atob(base64);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }

  function supported() {
    return Boolean(global.PublicKeyCredential && global.navigator.credentials && global.isSecureContext);
  }

  async function conditionalAvailable() {
    if (!supported() || typeof PublicKeyCredential.isConditionalMediationAvailable !== "function") return false;
    try {
      return await PublicKeyCredential.isConditionalMediationAvailable();
    } catch (error) {
      return false;
    }
  }

  function descriptors(list) {
    return (list || []).map(function (d) {
      return Object.assign({}, d, { id: fromBase64url(d.id) });
    });
  }

  // Browsers without parse*FromJSON get the same result from these fallbacks.
  function creationOptions(json) {
    if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: fromBase64url(json.challenge),
      user: Object.assign({}, json.user, { id: fromBase64url(json.user.id) }),
      excludeCredentials: descriptors(json.excludeCredentials),
    });
  }

  function requestOptions(json) {
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: fromBase64url(json.challenge),
      allowCredentials: descriptors(json.allowCredentials),
    });
  }

  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") {
      try {
        return credential.toJSON();
      } catch (error) {
        // fall through to the manual form
      }
    }
    const r = credential.response;
    const response = { clientDataJSON: toBase64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toBase64url(r.attestationObject);
      response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
    } else {
      response.authenticatorData = toBase64url(r.authenticatorData);
      response.signature = toBase64url(r.signature);
      if (r.userHandle) response.userHandle = toBase64url(r.userHandle);
    }
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: response,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
    };
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const data = response.status === 204 ? null : await response.json();
    if (!response.ok) {
      const error = new Error((data && data.error && data.error.message) || "The request failed.");
      error.code = (data && data.error && data.error.code) || "http_" + response.status;
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // Adds a passkey for the signed-in user; resolves to the passkey object.
  async function register(name) {
    const started = await post("/auth/passkeys/register/options", {});
    const credential = await navigator.credentials.create({ publicKey: creationOptions(started.options) });
    const body = { credential: credentialJSON(credential) };
    if (name) body.name = name;
    return post("/auth/passkeys/register/verify", body);
  }

  // Signs in; with { conditional: true } it waits for the user to pick a passkey from autofill.
  async function signIn(choice) {
    const options = choice || {};
    const started = await post("/auth/passkeys/login/options", options.email ? { email: options.email } : {});
    const request = { publicKey: requestOptions(started.options) };
    if (options.conditional) request.mediation = "conditional";
    if (options.signal) request.signal = options.signal;
    const credential = await navigator.credentials.get(request);
    return post("/auth/passkeys/login/verify", { credential: credentialJSON(credential) });
  }

  global.Passkeys = {
    supported: supported,
    conditionalAvailable: conditionalAvailable,
    register: register,
    signIn: signIn,
  };
})(window);
