// The account page: "Add a passkey", where the browser can make one.
(function () {
  "use strict";
  const area = document.getElementById("add-area");
  const button = document.getElementById("add-passkey");
  const status = document.getElementById("status");
  if (!window.Passkeys || !Passkeys.supported()) return;
  area.hidden = false;

  button.addEventListener("click", async function () {
    status.textContent = "Follow your browser's prompt to create a passkey…";
    button.disabled = true;
    try {
      await Passkeys.register();
      window.location.assign("/account?done=added");
    } catch (error) {
      if (error && error.name === "NotAllowedError") {
        status.textContent = "No passkey was made: the request was cancelled or timed out.";
      } else if (error && error.name === "InvalidStateError") {
        status.textContent = "This device already has a passkey for your account.";
      } else {
        status.textContent = (error && error.message) || "Adding a passkey did not work. Try again.";
      }
      button.disabled = false;
    }
  });
})();
