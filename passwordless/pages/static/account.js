// The account page: "Add a passkey", where the browser can make one. Adding one needs a recent
// sign-in: when the server answers reauthentication_required, the page asks the person to
// confirm (with a passkey, or a code emailed to them), which signs this browser in anew, and
// then adds the passkey.
(function () {
  "use strict";
  const area = document.getElementById("add-area");
  const button = document.getElementById("add-passkey");
  const status = document.getElementById("status");
  const confirmArea = document.getElementById("confirm-area");
  const confirmPasskey = document.getElementById("confirm-passkey");
  const confirmEmail = document.getElementById("confirm-email");
  const codeForm = document.getElementById("confirm-code-form");
  const codeInput = document.getElementById("confirm-code");
  const email = document.querySelector("main").dataset.email;
  if (!window.Passkeys || !Passkeys.supported()) return;
  area.hidden = false;

  function say(sentence) {
    status.textContent = sentence;
  }

  function explain(error) {
    if (error && error.name === "NotAllowedError") return "No passkey was made: the request was cancelled or timed out.";
    if (error && error.name === "InvalidStateError") return "This device already has a passkey for your account.";
    return (error && error.message) || "Adding a passkey did not work. Try again.";
  }

  async function addPasskey() {
    say("Follow your browser's prompt to create a passkey…");
    button.disabled = true;
    try {
      await Passkeys.register();
      window.location.assign("/account?done=added");
    } catch (error) {
      if (error && error.code === "reauthentication_required") {
        confirmArea.hidden = false;
        say("Confirm it is you to add a passkey.");
        (confirmPasskey.hidden ? confirmEmail : confirmPasskey).focus();
      } else {
        say(explain(error));
      }
      button.disabled = false;
    }
  }

  async function post(path, body, type) {
    return fetch(path, { method: "POST", credentials: "same-origin", headers: { "content-type": type }, body: body });
  }

  button.addEventListener("click", addPasskey);

  confirmPasskey.addEventListener("click", async function () {
    say("Follow your browser's prompt to use your passkey…");
    try {
      await Passkeys.signIn({ email: email }); // from this page: the browser gets a new session
    } catch (error) {
      say("That did not confirm it is you. Try again, or use an emailed code.");
      return;
    }
    confirmArea.hidden = true;
    await addPasskey();
  });

  confirmEmail.addEventListener("click", async function () {
    const answer = await post("/auth/magic-link", JSON.stringify({ email: email }), "application/json");
    if (answer.status !== 202) {
      const data = await answer.json().catch(function () { return null; });
      say((data && data.error && data.error.message) || "The email could not be sent. Try again later.");
      return;
    }
    codeForm.hidden = false;
    say("We sent a 6-digit code to " + email + ". Type it here.");
    codeInput.focus();
  });

  codeForm.addEventListener("submit", async function (event) {
    event.preventDefault();
    const code = codeInput.value.replace(/\s/g, "");
    // The hosted sign-in form: it signs this browser in anew and redirects to /account.
    const answer = await post("/sign-in/code", new URLSearchParams({ email: email, code: code }),
      "application/x-www-form-urlencoded");
    if (!answer.ok || !answer.redirected) {
      say("That code is wrong or has expired. Check the newest email, or ask for a new code.");
      codeInput.focus();
      return;
    }
    codeForm.hidden = true;
    confirmArea.hidden = true;
    codeInput.value = "";
    await addPasskey();
  });
})();
