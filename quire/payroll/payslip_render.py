"""A payslip as people read it: HTML (Jinja2, autoescaped) and PDF (fpdf2, pure Python).

Both show the same things: the tenant, the period, the version and its status (a void version
says VOID and which version supersedes it), the specialist, every line — informational ones with
their amount in the payable's currency, payout lines with the amount in the payslip's currency —
the FX lines with their rate and its source, and the total.

Names come from people (a specialist's display name, a tenant's name): in HTML they are escaped
by the template engine, never by hand. The PDF embeds DejaVu Sans when the system has it (most
Linux images do: fonts-dejavu), so any name prints as typed; without it, the PDF falls back to
the core Helvetica font, which only knows Latin-1, and text is transliterated to ASCII
(text-unidecode) — "Łódź" prints as "Lodz" — and the PDF says so in its footer.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

from fpdf import FPDF
from jinja2 import Environment, select_autoescape
from text_unidecode import unidecode

from quire.money import format_minor
from quire.payroll.payslips import FX, PAYOUT, REVERSED, Payslip, PayslipLine

# Where Debian/Ubuntu (fonts-dejavu-core), Fedora and Alpine put DejaVu Sans.
FONT_CANDIDATES = [
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu-sans-fonts"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
]
TRANSLITERATED_NOTE = (
    "No Unicode font was available: names and text are transliterated to ASCII in this PDF."
)

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_HTML = _ENV.from_string(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Payslip {{ p.period }} v{{ p.version }} — {{ p.specialist_name }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: .35rem .5rem; border-bottom: 1px solid #ddd; text-align: left; }
td.amount, th.amount { text-align: right; white-space: nowrap; }
tr.info td { color: #555; }
tr.payout td { font-weight: 600; }
tr.reversed td { color: #a00; }
.void { border: 3px solid #a00; color: #a00; padding: .5rem 1rem; font-weight: 700; }
</style>
</head>
<body>
{% if p.status == "void" %}
<p class="void">VOID{% if p.superseded_by_version %} — superseded by version
{{ p.superseded_by_version }}{% endif %}</p>
{% endif %}
<h1>Payslip {{ p.period }}</h1>
<dl>
<dt>Issued by</dt><dd>{{ p.tenant_name }}</dd>
<dt>For</dt><dd>{{ p.specialist_name }} &lt;{{ p.specialist_email }}&gt;</dd>
<dt>Version</dt><dd>{{ p.version }} ({{ p.status }}){% if p.supersedes_id %},
supersedes an earlier version{% endif %}</dd>
<dt>Payroll run</dt><dd>attempt {{ p.attempt }}, cutoff {{ cutoff }}, payout date
{{ p.payout_date.isoformat() }}</dd>
<dt>Issued</dt><dd>{{ issued }}</dd>
</dl>
<table>
<thead><tr><th>Item</th><th class="amount">Amount</th><th class="amount">Paid
({{ p.currency }})</th></tr></thead>
<tbody>
{% for row in rows %}
<tr class="{{ row.css }}"><td>{{ row.line.description }}{% if row.line.kind == "fx" %}<br>
<small>rate {{ row.line.fx_rate }}, source: {{ row.line.fx_source }}</small>{% endif %}</td>
<td class="amount">{{ row.source }}</td><td class="amount">{{ row.paid }}</td></tr>
{% endfor %}
</tbody>
<tfoot><tr class="payout"><td>Total</td><td></td>
<td class="amount">{{ total }}</td></tr></tfoot>
</table>
</body>
</html>
"""
)


def _source(line: PayslipLine) -> str:
    if line.source_amount_minor is None or line.source_currency is None:
        return ""
    return format_minor(line.source_amount_minor, line.source_currency)


def _rows(payslip: Payslip) -> list[dict[str, object]]:
    return [
        {
            "line": line,
            "css": {PAYOUT: "payout", REVERSED: "reversed"}.get(line.kind, "info"),
            "source": "" if line.kind == PAYOUT else _source(line),
            "paid": ""
            if line.amount_minor is None
            else format_minor(line.amount_minor, payslip.currency),
        }
        for line in payslip.lines
    ]


def _when(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def render_html(payslip: Payslip) -> str:
    """The payslip as a standalone HTML page (every value escaped)."""
    return _HTML.render(
        p=payslip,
        rows=_rows(payslip),
        total=format_minor(payslip.total_minor, payslip.currency),
        cutoff=_when(payslip.cutoff_at),
        issued=_when(payslip.issued_at),
    )


@cache
def unicode_font() -> tuple[Path, Path] | None:
    """(regular, bold) DejaVu Sans TTFs if the system has them."""
    for folder in FONT_CANDIDATES:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


class _Pdf(FPDF):
    def __init__(self, font: tuple[Path, Path] | None) -> None:
        super().__init__(format="A4")
        self.has_unicode = font is not None
        if font is not None:
            self.add_font("Body", "", str(font[0]))
            self.add_font("Body", "B", str(font[1]))
            self.body_font = "Body"
        else:
            self.body_font = "Helvetica"
        self.set_auto_page_break(auto=True, margin=18)

    def text_of(self, value: object) -> str:
        text = str(value)
        if self.has_unicode:
            return text
        # Helvetica is a Latin-1 font: transliterate (readable) rather than fail or drop.
        return unidecode(text).encode("latin-1", "replace").decode("latin-1")

    def style(self, size: float, bold: bool = False) -> None:
        self.set_font(self.body_font, "B" if bold else "", size)


def render_pdf(payslip: Payslip) -> bytes:
    """The payslip as a PDF. The same payslip gives the same bytes (the creation date is the
    payslip's issue time, not the clock)."""
    pdf = _Pdf(unicode_font())
    pdf.set_creation_date(payslip.issued_at or dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    pdf.set_title(pdf.text_of(f"Payslip {payslip.period} v{payslip.version}"))
    pdf.set_author(pdf.text_of(payslip.tenant_name))
    pdf.set_producer("Quire")
    pdf.add_page()
    width = pdf.epw
    if payslip.status == "void":
        pdf.set_text_color(170, 0, 0)
        pdf.style(16, bold=True)
        superseded = (
            f" — superseded by version {payslip.superseded_by_version}"
            if payslip.superseded_by_version
            else ""
        )
        pdf.multi_cell(width, 9, pdf.text_of(f"VOID{superseded}"), border=1, align="C")
        pdf.ln(3)
        pdf.set_text_color(0, 0, 0)
    pdf.style(18, bold=True)
    pdf.cell(width, 10, pdf.text_of(f"Payslip {payslip.period}"), new_x="LMARGIN", new_y="NEXT")
    pdf.style(10)
    facts = [
        ("Issued by", payslip.tenant_name),
        ("For", f"{payslip.specialist_name} <{payslip.specialist_email}>"),
        ("Version", f"{payslip.version} ({payslip.status})"),
        (
            "Payroll run",
            f"attempt {payslip.attempt}, cutoff {_when(payslip.cutoff_at)}, "
            f"payout date {payslip.payout_date.isoformat()}",
        ),
        ("Issued", _when(payslip.issued_at)),
    ]
    for label, value in facts:
        pdf.style(10, bold=True)
        pdf.cell(32, 6, pdf.text_of(label))
        pdf.style(10)
        pdf.multi_cell(width - 32, 6, pdf.text_of(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    item_w, amount_w = width - 80, 40
    pdf.style(10, bold=True)
    pdf.cell(item_w, 7, "Item", border="B")
    pdf.cell(amount_w, 7, "Amount", border="B", align="R")
    pdf.cell(amount_w, 7, pdf.text_of(f"Paid ({payslip.currency})"), border="B", align="R")
    pdf.ln()
    for row in _rows(payslip):
        line = row["line"]
        assert isinstance(line, PayslipLine)
        description = line.description
        if line.kind == FX:
            description += f"\nrate {line.fx_rate}, source: {line.fx_source}"
        pdf.style(9, bold=line.kind == PAYOUT)
        text = pdf.text_of(description)
        height = 5 * len(pdf.multi_cell(item_w, 5, text, dry_run=True, output="LINES"))
        if pdf.will_page_break(height):
            pdf.add_page()
        if line.kind == REVERSED:
            pdf.set_text_color(170, 0, 0)
        top = pdf.get_y()
        pdf.multi_cell(item_w, 5, text, new_x="RIGHT", new_y="TOP")
        pdf.cell(amount_w, 5, pdf.text_of(row["source"]), align="R")
        pdf.cell(amount_w, 5, pdf.text_of(row["paid"]), align="R")
        pdf.set_text_color(0, 0, 0)
        pdf.set_xy(pdf.l_margin, top + height + 1)
    pdf.style(11, bold=True)
    pdf.cell(item_w + amount_w, 8, "Total", border="T")
    pdf.cell(
        amount_w,
        8,
        pdf.text_of(format_minor(payslip.total_minor, payslip.currency)),
        border="T",
        align="R",
    )
    pdf.ln()
    if not pdf.has_unicode:
        pdf.ln(4)
        pdf.style(7)
        pdf.multi_cell(width, 4, TRANSLITERATED_NOTE)
    return bytes(pdf.output())
