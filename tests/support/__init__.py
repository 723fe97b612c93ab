"""What the tests share: the app in-process (app), the real server as a process (live, processes),
SMTP sinks (mail), Chromium (browser), WebAuthn signatures (authenticator), sign-in steps (signin)
and one way to wait for a condition (waiting)."""
