"""Email templates: the built-in ones, files in email.templates_dir that replace them, values
HTML-escaped in the HTML body, and a template that cannot render stopping `serve` with one line."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from passwordless.mail.render import TemplateError, Templates
from tests.support.processes import clean_env, cli

VALUES = {
    "site": "Café <Example> & Co",
    "link": "https://auth.example.com/auth/magic-link/verify?token=abc_123",
    "code": "042917",
    "expires_at": "14:32 UTC on 22 Nov 2026",
    "expires_minutes": "15",
    "ip": "203.0.113.7",
    "browser": "Firefox on Linux",
    "email": "ann@example.com",
}


def test_the_built_in_templates_carry_every_value() -> None:
    rendered = Templates().render("magic_link", VALUES)
    assert "\n" not in rendered.subject and rendered.subject
    for name in ("link", "code"):
        assert VALUES[name] in rendered.text and VALUES[name] in rendered.html
    assert "<Example>" not in rendered.html  # escaped in HTML


def test_files_in_the_templates_dir_replace_the_built_in_ones(tmp_path: Path) -> None:
    (tmp_path / "magic_link.subject.txt").write_text("Your ${site}\ncode: $code\n", encoding="utf-8")
    (tmp_path / "magic_link.txt").write_text("Pay $$0. Open $link (valid ${expires_minutes} min)", encoding="utf-8")
    (tmp_path / "magic_link.html").write_text("<p>$site</p><a href=\"$link\">$code</a>", encoding="utf-8")
    rendered = Templates(str(tmp_path)).render("magic_link", VALUES)
    assert rendered.subject == "Your Café <Example> & Co code: 042917"  # one line
    assert rendered.text == f"Pay $0. Open {VALUES['link']} (valid 15 min)"
    body = f'<p>Café &lt;Example&gt; &amp; Co</p><a href="{VALUES["link"]}">042917</a>'
    assert rendered.html.startswith("<!doctype html>") and f">\n{body}</body>" in rendered.html  # in the layout
    assert "<title>Your Café &lt;Example&gt; &amp; Co code: 042917</title>" in rendered.html


def test_the_shared_layout_can_be_replaced_and_a_whole_document_is_sent_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "layout.html").write_text("<html><title>$subject</title><body>$content</body></html>", encoding="utf-8")
    (tmp_path / "magic_link.html").write_text("<b>$code</b>", encoding="utf-8")
    rendered = Templates(str(tmp_path)).render("magic_link", VALUES)
    assert rendered.html == f"<html><title>{html.escape(rendered.subject)}</title><body><b>042917</b></body></html>"
    (tmp_path / "magic_link.html").write_text("<!doctype html><HTML><body>$code</body></HTML>", encoding="utf-8")
    assert Templates(str(tmp_path)).render("magic_link", VALUES).html == "<!doctype html><HTML><body>042917</body></HTML>"


def test_a_layout_that_cannot_render_is_refused(tmp_path: Path) -> None:
    (tmp_path / "layout.html").write_text("<title>$title</title>$content", encoding="utf-8")
    with pytest.raises(TemplateError, match="layout.html"):
        Templates(str(tmp_path))


def test_a_templates_dir_may_replace_only_some_parts(tmp_path: Path) -> None:
    (tmp_path / "magic_link.txt").write_text("Only the text: $code", encoding="utf-8")
    rendered = Templates(str(tmp_path)).render("magic_link", VALUES)
    assert rendered.text == "Only the text: 042917"
    assert rendered.html == Templates().render("magic_link", VALUES).html


@pytest.mark.parametrize("body", ["Hello $nobody", "A lone $ sign", "${code"])
def test_a_template_that_cannot_render_is_refused(tmp_path: Path, body: str) -> None:
    (tmp_path / "magic_link.txt").write_text(body, encoding="utf-8")
    with pytest.raises(TemplateError, match="magic_link.txt"):
        Templates(str(tmp_path))


def test_serve_stops_with_one_line_for_a_broken_template(tmp_path: Path) -> None:
    (tmp_path / "magic_link.html").write_text("<p>$nobody</p>", encoding="utf-8")
    env = {**clean_env(), "DATABASE_PATH": str(tmp_path / "auth.db")}
    config = tmp_path / "config.toml"
    config.write_text(f'[email]\ntemplates_dir = "{tmp_path}"\n', encoding="utf-8")
    result = cli("serve", "--config", str(config), cwd=tmp_path, env=env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "magic_link.html" in lines[0] and "nobody" in lines[0], result.stderr
    assert not (tmp_path / "auth.db").exists()  # stopped before touching the database
