"""A playbook for people: the DOT source, the SVG picture and the markdown artifact."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from quire.lifecycle.playbooks import Playbook, validate_playbook
from quire.lifecycle.report import playbook_dot, playbook_markdown, playbook_svg
from quire.lifecycle.shipped import shipped_playbook

SVG = "{http://www.w3.org/2000/svg}"
SHIPPED = ("person.onboard", "person.exit", "person.transfer")


def awkward() -> Playbook:
    """A playbook whose texts need escaping everywhere: XML, DOT and markdown."""
    return validate_playbook(
        {
            "event_type": "person.update",
            "name": 'Tom & Jerry\'s <"update"> | test \\ path',
            "description": "Line one\nline | two",
            "steps": [
                {"id": "node", "kind": "chat.post", "params": {"text": "a < b & c"}},
                {
                    "id": "edge",
                    "kind": "email.send",
                    "needs": ["node"],
                    "when": "person.title is given and '<&>|`' != person.title",
                    "params": {"to": "x@example.com", "subject": "s", "body": "b"},
                    "compensate": {"kind": "chat.post", "params": {"text": "sorry"}},
                },
            ],
        }
    )


def edges(book: Playbook) -> set[tuple[str, str]]:
    return {(need, s.id) for s in book.steps for need in s.needs}


# -- SVG --------------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", SHIPPED)
def test_the_svg_parses_as_xml_and_names_every_step(event_type):
    book = shipped_playbook(event_type)
    root = ET.fromstring(playbook_svg(book).encode())
    assert root.tag == f"{SVG}svg"
    assert root.get("version") == "1.1"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    for s in book.steps:
        assert s.id in texts
        assert s.kind in texts


@pytest.mark.parametrize("event_type", SHIPPED)
def test_the_svg_draws_one_arrow_per_need_and_a_box_per_step(event_type):
    book = shipped_playbook(event_type)
    root = ET.fromstring(playbook_svg(book).encode())
    arrows = [p for p in root.iter(f"{SVG}path") if p.get("class") == "need"]
    titles = {p.find(f"{SVG}title").text for p in arrows}
    assert titles == {f"{step} needs {need}" for need, step in edges(book)}
    groups = [g for g in root.iter(f"{SVG}g") if g.get("class") == "step"]
    assert [g.get("id") for g in groups] == [f"step-{s.id}" for s in book.steps]


def test_the_svg_shows_compensations_as_dashed_notes():
    book = shipped_playbook("person.onboard")
    root = ET.fromstring(playbook_svg(book).encode())
    notes = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "undo"]
    compensated = [s for s in book.steps if s.compensation() is not None]
    assert len(notes) == len(compensated)
    assert all(r.get("stroke-dasharray") for r in notes)
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert "undo: identity.delete_user" in texts


def test_the_svg_lays_waves_out_left_to_right_without_overlapping_boxes():
    book = shipped_playbook("person.exit")
    root = ET.fromstring(playbook_svg(book).encode())
    boxes = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "step":
            rect = g.find(f"{SVG}rect")
            boxes[g.get("id").removeprefix("step-")] = tuple(
                float(rect.get(a)) for a in ("x", "y", "width", "height")
            )
    for s in book.steps:
        for need in s.needs:
            assert boxes[need][0] < boxes[s.id][0]
    placed = list(boxes.values())
    for i, (x1, y1, w1, h1) in enumerate(placed):
        for x2, y2, w2, h2 in placed[i + 1 :]:
            assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1
    width, height = float(root.get("width")), float(root.get("height"))
    assert all(x + w <= width and y + h <= height for x, y, w, h in placed)


def test_the_svg_escapes_what_it_shows():
    svg = playbook_svg(awkward())
    root = ET.fromstring(svg.encode())  # it parses: every text is escaped
    assert (
        root.find(f"{SVG}title").text == 'Tom & Jerry\'s <"update"> | test \\ path (person.update)'
    )
    assert '<"update">' not in svg


def test_the_svg_is_the_same_every_time():
    book = shipped_playbook("person.onboard")
    assert playbook_svg(book) == playbook_svg(shipped_playbook("person.onboard"))


def test_long_ids_are_shortened_in_the_box_but_whole_in_the_tooltip():
    long_id = "a_step_with_a_really_quite_long_identifier"
    book = validate_playbook(
        {
            "event_type": "person.onboard",
            "name": "Long",
            "steps": [{"id": long_id, "kind": "chat.post", "params": {"text": "hi"}}],
        }
    )
    root = ET.fromstring(playbook_svg(book).encode())
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert long_id not in texts
    assert any(t.endswith("\u2026") and long_id.startswith(t[:-1]) for t in texts)
    assert any(long_id in (t.text or "") for t in root.iter(f"{SVG}title"))


# -- DOT --------------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", SHIPPED)
def test_the_dot_names_every_step_and_every_edge(event_type):
    book = shipped_playbook(event_type)
    dot = playbook_dot(book)
    assert dot.startswith("digraph playbook {")
    for s in book.steps:
        assert re.search(rf"^\s*{s.id} \[label=\"{s.id}\\n{re.escape(s.kind)}", dot, re.M)
    found = set(re.findall(r"^\s*(\w+) -> (\w+)\s*$", dot, re.M))
    assert found == edges(book)


def test_the_dot_draws_compensations_as_dashed_notes():
    dot = playbook_dot(shipped_playbook("person.onboard"))
    assert '"undo.account" [label="undo: identity.delete_user"' in dot
    assert 'account -> "undo.account" [arrowhead=none style=dashed]' in dot
    assert "undo.welcome_email" not in dot  # an email has nothing to undo


def test_the_dot_quotes_keywords_and_escapes_labels():
    dot = playbook_dot(awkward())
    assert '"node" -> "edge"' in dot  # node and edge are DOT keywords
    assert 'label="Tom & Jerry\'s <\\"update\\"> | test \\\\ path (person.update)"' in dot
    assert "undo: chat.post (custom)" in dot


# -- markdown ---------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", SHIPPED)
def test_the_markdown_lists_every_step_in_a_table(event_type):
    book = shipped_playbook(event_type)
    markdown = playbook_markdown(book, None)
    rows = [line for line in markdown.splitlines() if line.startswith("| `")]
    assert len(rows) == len(book.steps)
    for row, s in zip(rows, book.steps, strict=True):
        assert row.startswith(f"| `{s.id}` | `{s.kind}` |")
    assert "| step | kind | needs | when | retries | timeout |" in markdown
    assert "picture" not in markdown


def test_the_markdown_says_needs_when_retries_timeout_and_compensation():
    markdown = playbook_markdown(shipped_playbook("person.onboard"), None)
    groups = next(line for line in markdown.splitlines() if line.startswith("| `groups`"))
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", groups)[1:-1]]
    assert cells == [
        "`groups`",
        "`identity.add_to_groups`",
        "`account`",
        "`person.groups \\| default([]) \\| length > 0`",
        "3 (from 2 s, \u00d72, at most 60 s, jitter 0.2)",
        "30 s",
        "stop, undo",
        "`identity.remove_from_groups`",
    ]
    assert "**Waves** (steps of a wave run together): 1. `account`, `specialist`" in markdown


def test_the_markdown_links_the_picture():
    url = "https://quire.example/lifecycle/playbooks/person.exit/graph.svg"
    markdown = playbook_markdown(shipped_playbook("person.exit"), url)
    assert markdown.rstrip().endswith(f"[The playbook as a picture]({url})")
    assert "a step out of retries is parked; the others still run" in markdown


def test_the_markdown_keeps_awkward_text_inside_its_cells():
    markdown = playbook_markdown(awkward(), None)
    rows = [line for line in markdown.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    for row in rows:
        assert len(re.split(r"(?<!\\)\|", row)) == 10  # 8 cells between 9 pipes
    assert "``person.title is given and '<&>\\|`' != person.title``" in rows[1]
    assert "`chat.post` (custom)" in rows[1]
