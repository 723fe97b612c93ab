"""The hosted pages' renderer (web/markup.py): values are escaped unless they are markup it made."""

from __future__ import annotations

from pathlib import Path

import pytest

from passwordless.web.markup import Html, Templates, join


@pytest.fixture
def templates(tmp_path: Path) -> Templates:
    (tmp_path / "item.html").write_text('<li title="${name}">${name}</li>\n', encoding="utf-8")
    (tmp_path / "list.html").write_text("<ul>${items}</ul>\n", encoding="utf-8")
    return Templates(tmp_path)


def test_every_special_character_in_a_value_is_escaped(templates: Templates) -> None:
    rendered = templates.render("item.html", name="<b>&\"'")
    assert rendered == '<li title="&lt;b&gt;&amp;&quot;&#x27;">&lt;b&gt;&amp;&quot;&#x27;</li>'


def test_rendered_markup_passes_through_and_nests(templates: Templates) -> None:
    items = join(templates.render("item.html", name=name) for name in ("a", "<b>"))
    rendered = templates.render("list.html", items=items)
    assert isinstance(rendered, Html)
    assert rendered == '<ul><li title="a">a</li><li title="&lt;b&gt;">&lt;b&gt;</li></ul>'


def test_a_plain_string_that_looks_like_markup_is_still_escaped(templates: Templates) -> None:
    assert templates.render("list.html", items="<li>x</li>") == "<ul>&lt;li&gt;x&lt;/li&gt;</ul>"


def test_a_missing_value_raises(templates: Templates) -> None:
    with pytest.raises(KeyError, match="name"):
        templates.render("item.html")


def test_a_template_is_read_once(templates: Templates, tmp_path: Path) -> None:
    templates.render("item.html", name="a")
    (tmp_path / "item.html").write_text("changed ${name}", encoding="utf-8")
    assert templates.render("item.html", name="a") == '<li title="a">a</li>'


def test_a_join_separator_is_escaped() -> None:
    assert join([Html("<i>a</i>"), Html("<i>b</i>")], "<br>") == "<i>a</i>&lt;br&gt;<i>b</i>"
