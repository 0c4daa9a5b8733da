"""A playbook for people: its DAG as Graphviz DOT, as an SVG picture, and as a markdown table
(the Prefect artifact a run publishes, and what the API serves).

The SVG is laid out here rather than by Graphviz: the `dot` program is not part of Quire's
dependencies (only the `graphviz` Python package, which writes DOT source), and a picture the
API can always draw, byte for byte the same for the same playbook, is worth more than a
prettier one that needs a binary. Steps go left to right in the waves `topological_layers`
gives; an arrow runs from each need to the step that needs it; a dashed note under a step
names what undoes it.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from graphviz import Digraph, nohtml

from quire.lifecycle.kinds import KINDS
from quire.lifecycle.playbooks import Playbook, Step, topological_layers

# Layout, in SVG user units (pixels).
MARGIN = 24
TITLE_H = 44
BOX_W = 230
BOX_H = 62
COLUMN_GAP = 90
NOTE_GAP = 6
NOTE_H = 22
ROW_GAP = 22
ROW_H = BOX_H + NOTE_GAP + NOTE_H + ROW_GAP
LEGEND_H = 28
CHARS_PER_LINE = 30  # of 12px text in a box
FONT = "Helvetica, Arial, sans-serif"

# One colour per provider, so who a step talks to shows at a glance.
FILL = {
    "identity": "#e8f0fe",
    "email": "#fef7e0",
    "chat": "#e6f4ea",
    "calendar": "#fce8e6",
    "documents": "#f1f3f4",
    "ai": "#f3e8fd",
    "quire": "#e0f7fa",
}


def _compensation_label(step: Step) -> str | None:
    """What undoes the step, in words: None when nothing does."""
    compensation = step.compensation()
    if compensation is None:
        return None
    custom = step.compensate is not None
    return f"undo: {compensation.kind}" + (" (custom)" if custom else "")


def _compensation_cell(step: Step) -> str:
    label = _compensation_label(step)
    if label is not None:
        kind = label.removeprefix("undo: ")
        return _code(kind.removesuffix(" (custom)")) + (" (custom)" if "(custom)" in kind else "")
    if step.compensate is False:
        return "none (opted out)"
    return "none"


# -- DOT --------------------------------------------------------------------------------------


def _dot_text(*lines: str) -> str:
    """A DOT label from plain lines: backslashes and quotes taken literally, never HTML."""
    escaped = [line.replace("\\", "\\\\").replace('"', '\\"') for line in lines]
    return nohtml("\\n".join(escaped))


def playbook_dot(playbook: Playbook) -> str:
    """The playbook as Graphviz DOT source (render it with `dot -Tsvg` where Graphviz is
    installed): a box per step, an edge per need, a dashed note per compensation."""
    graph = Digraph(
        name="playbook",
        graph_attr={
            "rankdir": "LR",
            "label": _dot_text(f"{playbook.name} ({playbook.event_type})"),
            "labelloc": "t",
            "fontname": "Helvetica",
        },
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica"},
        edge_attr={"fontname": "Helvetica"},
    )
    for step in playbook.steps:
        lines = [step.id, step.kind] + ([f"when: {step.when}"] if step.when else [])
        kind = KINDS.get(step.kind)
        fill = FILL.get(kind.provider.value, "#ffffff") if kind else "#ffffff"
        graph.node(step.id, label=_dot_text(*lines), fillcolor=fill)
        label = _compensation_label(step)
        if label is not None:
            note = f"undo.{step.id}"
            graph.node(note, label=_dot_text(label), shape="note", style="dashed", fontsize="10")
            graph.edge(step.id, note, style="dashed", arrowhead="none")
    for step in playbook.steps:
        for need in step.needs:
            graph.edge(need, step.id)
    return graph.source


# -- SVG --------------------------------------------------------------------------------------


def _fit(text: str, width: int = CHARS_PER_LINE) -> str:
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _text(x: float, y: float, content: str, **attrs: str) -> str:
    extra = "".join(f" {name.replace('_', '-')}={quoteattr(v)}" for name, v in attrs.items())
    return f'<text x="{x:g}" y="{y:g}"{extra}>{escape(content)}</text>'


def playbook_svg(playbook: Playbook) -> str:
    """The playbook as an SVG 1.1 picture, laid out in waves left to right; the same
    playbook always gives the same bytes."""
    layers = topological_layers(playbook)
    tallest = max(len(layer) for layer in layers)
    width = 2 * MARGIN + len(layers) * BOX_W + (len(layers) - 1) * COLUMN_GAP
    height = 2 * MARGIN + TITLE_H + tallest * ROW_H - ROW_GAP + LEGEND_H
    width = max(width, 2 * MARGIN + 420)

    where: dict[str, tuple[float, float]] = {}
    for column, layer in enumerate(layers):
        x = MARGIN + column * (BOX_W + COLUMN_GAP)
        top = MARGIN + TITLE_H + (tallest - len(layer)) * ROW_H / 2  # centred in its column
        for row, step in enumerate(layer):
            where[step.id] = (x, top + row * ROW_H)

    title = f"{playbook.name} ({playbook.event_type})"
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width:g}" '
        f'height="{height:g}" viewBox="0 0 {width:g} {height:g}" font-family="{FONT}">',
        f"<title>{escape(title)}</title>",
        "<defs>",
        '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#5f6368"/></marker>',
        "</defs>",
        f'<rect x="0" y="0" width="{width:g}" height="{height:g}" fill="#ffffff"/>',
        _text(MARGIN, MARGIN + 18, _fit(title, 90), font_size="16", font_weight="bold"),
    ]
    if playbook.continue_on_failure:
        note = "carries on past a failing step"
    else:
        note = "a failing step stops the run; what was done is undone"
    parts.append(_text(MARGIN, MARGIN + 36, note, font_size="11", fill="#5f6368"))

    # Arrows first, so boxes sit on top of them.
    for step in playbook.steps:
        x2, y2 = where[step.id]
        for need in step.needs:
            x1, y1 = where[need]
            sx, sy, ex, ey = x1 + BOX_W, y1 + BOX_H / 2, x2, y2 + BOX_H / 2
            bend = COLUMN_GAP / 2
            parts.append(
                f'<path class="need" d="M{sx:g},{sy:g} C{sx + bend:g},{sy:g} {ex - bend:g},'
                f'{ey:g} {ex:g},{ey:g}" fill="none" stroke="#5f6368" stroke-width="1.5" '
                f'marker-end="url(#arrow)"><title>{escape(f"{step.id} needs {need}")}</title>'
                "</path>"
            )

    for step in playbook.steps:
        x, y = where[step.id]
        kind = KINDS.get(step.kind)
        fill = FILL.get(kind.provider.value, "#ffffff") if kind else "#ffffff"
        tip = f"{step.id}: {step.kind}" + (f" when {step.when}" if step.when else "")
        parts.append(f'<g class="step" id={quoteattr("step-" + step.id)}>')
        parts.append(f"<title>{escape(tip)}</title>")
        parts.append(
            f'<rect x="{x:g}" y="{y:g}" width="{BOX_W}" height="{BOX_H}" rx="8" ry="8" '
            f'fill="{fill}" stroke="#3c4043" stroke-width="1"/>'
        )
        parts.append(_text(x + 10, y + 20, _fit(step.id, 26), font_size="13", font_weight="bold"))
        parts.append(_text(x + 10, y + 37, _fit(step.kind), font_size="12"))
        if step.when:
            parts.append(
                _text(x + 10, y + 53, _fit(f"when {step.when}", 36), font_size="10", fill="#5f6368")
            )
        label = _compensation_label(step)
        if label is not None:
            ny = y + BOX_H + NOTE_GAP
            parts.append(
                f'<rect class="undo" x="{x + 12:g}" y="{ny:g}" width="{BOX_W - 24}" '
                f'height="{NOTE_H}" fill="#ffffff" stroke="#9aa0a6" stroke-dasharray="4 3"/>'
            )
            parts.append(_text(x + 20, ny + 15, _fit(label, 34), font_size="10", fill="#5f6368"))
        parts.append("</g>")

    parts.append(
        _text(
            MARGIN,
            height - MARGIN + 4,
            "arrows: needs (runs after); dashed: what undoes a step if the run fails",
            font_size="10",
            fill="#5f6368",
        )
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# -- markdown ---------------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Text that stays inside its table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    return f"{fence}{_cell(text)}{fence}"


def _retries(step: Step) -> str:
    retry = step.retry
    if retry.attempts == 0:
        return "none"
    return (
        f"{retry.attempts} (from {retry.backoff_seconds:g} s, \u00d7{retry.backoff_factor:g}, "
        f"at most {retry.max_backoff_seconds:g} s, jitter {retry.jitter:g})"
    )


def playbook_markdown(playbook: Playbook, graph_url: str | None = None) -> str:
    """The playbook as markdown (a Prefect artifact): what it does, its waves, a table of its
    steps, and a link to its picture when `graph_url` is given."""
    layers = topological_layers(playbook)
    lines = [f"## {_cell(playbook.name)} ({_code(playbook.event_type)})", ""]
    if playbook.description:
        lines += [_cell(playbook.description), ""]
    if playbook.continue_on_failure:
        lines.append("**On failure:** a step out of retries is parked; the others still run.")
    else:
        lines.append(
            "**On failure:** a step out of retries stops the run; what was done is undone, "
            "in reverse order."
        )
    waves = "; ".join(
        f"{n}. " + ", ".join(_code(step.id) for step in layer)
        for n, layer in enumerate(layers, start=1)
    )
    lines += ["", f"**Waves** (steps of a wave run together): {waves}", ""]
    lines += [
        "| step | kind | needs | when | retries | timeout | on failure | compensation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for step in playbook.steps:
        needs = ", ".join(_code(need) for need in step.needs) or "\u2014"
        when = _code(step.when) if step.when else "\u2014"
        on_failure = "carry on" if playbook.continues_past(step) else "stop, undo"
        lines.append(
            f"| {_code(step.id)} | {_code(step.kind)} | {needs} | {when} | {_retries(step)} "
            f"| {step.timeout_seconds:g} s | {on_failure} | {_compensation_cell(step)} |"
        )
    if graph_url:
        lines += ["", f"[The playbook as a picture]({graph_url.replace(')', '%29')})"]
    return "\n".join(lines) + "\n"
