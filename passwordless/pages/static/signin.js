// The sign-in page: a passkey button and passkey autofill, where the browser has them.
(function () {
  "use strict";
  const main = document.querySelector("main");
  const area = document.getElementById("passkey-area");
  const button = document.getElementById("passkey-button");
  const status = document.getElementById("status");
  const destination = (main && main.dataset.redirect) || "/account";
  let autofill = null;

  function say(sentence) {
    status.textContent = sentence;
  }

  function explain(error) {
    if (error && error.name === "NotAllowedError")
      return "The passkey request was cancelled or timed out. If this device has no passkey for your account, use your email.";
    if (error && error.name === "AbortError") return "";
    if (error && error.code === "invalid_credential")
      return "That passkey is not registered here. Sign in with your email instead.";
    if (error && error.code === "rate_limited") return error.message;
    return "Signing in with a passkey did not work. Try again, or use your email.";
  }

  async function signIn(options) {
    await Passkeys.signIn(options);
    window.location.assign(destination);
  }

  if (!window.Passkeys || !Passkeys.supported()) return;
  area.hidden = false;

  button.addEventListener("click", async function () {
    if (autofill) autofill.abort();
    say("Follow your browser's prompt to use your passkey…");
    try {
      await signIn({});
    } catch (error) {
      say(explain(error));
    }
  });

  Passkeys.conditionalAvailable().then(function (available) {
    if (!available) return;
    autofill = new AbortController();
    signIn({ conditional: true, signal: autofill.signal }).catch(function (error) {
      const sentence = explain(error);
      if (sentence && error.name !== "NotAllowedError") say(sentence);
    });
  });
})();
