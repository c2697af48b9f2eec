"""Monthly invoices per contract (domain.md section 5; the choices: docs/invoices.md).

Functional core, imperative shell: ``load_month`` reads what a month needs from the database,
``invoice_contract`` (pure) turns one contract and that data into an ``Invoice`` (the contract.md
payload plus its per-QH traceability lines), ``store_invoices`` versions them in ``invoices`` /
``invoice_lines`` (sql/003_invoices.sql), and ``run_invoices`` / ``export_invoices`` write files.

The rules in one place::

    contracts      the newest CRM file (max contracts.file_time); a contract is listed for a Berlin
                   month when [contract_begin, contract_end) (half-open Berlin days: it covers its
                   begin day, not its end day; empty end = open) covers a day of it
    invoiced QHs   QHs of the month, inside the contract's period, in which at least one asset of
                   the portfolio (the assets of the newest CRM file) has a live or final value;
                   forecast-only QHs are never invoiced
    energy         the contract asset's best_kw x 0.25 / 1000 per invoiced QH (no row or no
                   best_kw: 0 MWh, and the invoice is provisional)
    provisional    some invoiced QH of the asset is not best_source 'final' (or none is invoiced)
    infeed         fixed: MWh x price | market: sum MWh x public VWAP (no VWAP: unpriced_qh)
    fees           fixed_as_produced: MWh x fee | fixed_for_capacity: capacity MW x fee x days
                   covered / days of the month (pro rata temporis) | percent_of_market: sum MWh x public VWAP x fee_percent / 100
    redispatch     sum over redispatched invoiced QHs of latest_kw x 0.25 / 1000 x DSO price
    money          exact decimals; net rounded to cents half-up, VAT = round(net x 0.19),
                   gross = net + VAT; total_gross_eur = infeed + redispatch - fees (gross)

Example: 1.5 MWh at a fixed 90 EUR/MWh -> net 135.00, VAT 25.65, gross 160.65.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import psycopg

from intraday.core.invoicing import Invoice
from intraday.core.qh import UTC, to_dt
from intraday.readmodels.invoicing import computed_invoices, months_with_data
from intraday.sink.db import connect

EXIT_INVOICE_ERROR = 4
INVOICE_LOCK = 740_512_003  # advisory lock: one writer of invoice versions at a time
ISSUER = "Intraday desk (direct marketer of the portfolio)"


def next_state(invoice: Invoice, earlier_states: Iterable[str]) -> str:
    """State of a new version: draft (error), corrected (a final existed), final, or provisional.

    ``final`` needs every QH of the contract's period in the month invoiced on final data
    (``complete`` and not ``provisional``); a half-measured month stays provisional.
    """
    p = invoice.payload
    if p["status"] == "error":
        return "draft"
    if "final" in set(earlier_states):
        return "corrected"
    return "final" if (not p["provisional"] and p["complete"]) else "provisional"


def _has_invoice_tables(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('invoices') IS NOT NULL").fetchone()[0]


def store_invoices(conn: psycopg.Connection, invoices: list[Invoice],
                   withdraw_others_in: Iterable[str] = ()) -> list[dict]:
    """Record the invoices, one transaction; returns the payloads with version, state and hash.

    The same content as the newest version of an invoice adds nothing (and returns that version);
    other content adds the next version with its lines. ``withdraw_others_in``: months for which
    ``invoices`` is complete; a current invoice of such a month for a contract not among them is
    withdrawn.
    """
    out = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (INVOICE_LOCK,))
        for inv in invoices:
            cid, month = inv.payload["contract_id"], inv.payload["month"]
            h = inv.content_hash
            versions = conn.execute(
                "SELECT version, state, content_hash FROM invoices WHERE contract_id = %s AND month = %s"
                " ORDER BY version", (cid, month)).fetchall()
            if versions and versions[-1][2] == h:
                version, state = versions[-1][0], versions[-1][1]
            else:
                version = versions[-1][0] + 1 if versions else 1
                state = next_state(inv, (v[1] for v in versions))
                stored = {**inv.payload, "version": version, "state": state}
                conn.execute(
                    "INSERT INTO invoices (contract_id, month, version, state, status, content_hash, payload)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (cid, month, version, state, inv.payload["status"], h, json.dumps(stored)))
                with conn.cursor() as cur, cur.copy(
                        "COPY invoice_lines (contract_id, month, version, kind, delivery_start, mwh,"
                        " price_eur_mwh, amount_eur, source) FROM STDIN") as cp:
                    for ln in inv.lines:
                        cp.write_row((cid, month, version, ln.kind,
                                      to_dt(ln.delivery_start),
                                      ln.mwh, ln.price_eur_mwh, ln.amount_eur, ln.source))
            out.append({**inv.payload, "version": version, "state": state, "content_hash": h})
        for month in sorted(set(withdraw_others_in or ())):
            _withdraw(conn, month, {i.payload["contract_id"] for i in invoices if i.payload["month"] == month})
    return out


def _withdraw(conn: psycopg.Connection, month: str, listed: set[str]) -> None:
    """A new ``withdrawn`` version of every current invoice of ``month`` whose contract is no longer
    listed (dropped from the newest CRM file, or its corrected dates do not cover the month)."""
    current = conn.execute(
        "SELECT contract_id, version, payload FROM invoices_current WHERE month = %s AND state <> 'withdrawn'",
        (month,)).fetchall()
    for cid, version, payload in current:
        if cid in listed:
            continue
        doc = {**payload, "version": version + 1, "state": "withdrawn",
               "withdrawn_reason": "the newest CRM file does not invoice this contract for the month"}
        h = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        conn.execute(
            "INSERT INTO invoices (contract_id, month, version, state, status, content_hash, payload)"
            " VALUES (%s, %s, %s, 'withdrawn', %s, %s, %s)",
            (cid, month, version + 1, payload.get("status", "ok"), h, json.dumps(doc)))


def issue_invoices(conn: psycopg.Connection, year: int, month: int) -> list[dict]:
    """Compute and store a month's invoices; the payloads carry version, state and content_hash."""
    return store_invoices(conn, computed_invoices(conn, year, month), withdraw_others_in=[f"{year:04d}-{month:02d}"])


# ----------------------------------------------------------------------------------------------
# Files


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _json(invoices: list[dict]) -> str:
    return json.dumps(invoices, indent=2, ensure_ascii=False) + "\n"


def export_invoices(conn: psycopg.Connection, path: Path) -> int:
    """Write ``invoices.json`` for every Berlin month with invoiced QHs; returns the invoice count.

    The invoices are recorded as versions too (when sql/003 is applied), so the file carries
    ``version`` and ``state``.
    """
    store = _has_invoice_tables(conn)
    invoices: list[dict] = []
    for year, month in months_with_data(conn):
        computed = computed_invoices(conn, year, month)
        invoices += (store_invoices(conn, computed, withdraw_others_in=[f"{year:04d}-{month:02d}"]) if store
                     else [i.payload for i in computed])
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_text(Path(path), _json(invoices))
    return len(invoices)


def document_name(invoice: dict) -> str:
    """``<contract_id>_<YYYY-MM>.html``, the contract id made safe for a file name."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", invoice["contract_id"]) or "_"
    return f"{safe}_{invoice['month']}.html"


def _eur(v: float | None, sign: int = 1) -> str:
    return "" if v is None else f"{sign * v:,.2f} EUR"


def _num(v: float | None, unit: str = "") -> str:
    if v is None:
        return ""
    return f"{v:,.6f}".rstrip("0").rstrip(".") + (f" {unit}" if unit else "")


def render_html(inv: dict, issued_at: dt.datetime | None = None) -> str:
    """A human-readable invoice: parties, period, entries (quantity, unit net price, net, VAT,
    gross), totals, status, the provisional marker and the errors."""
    e = html.escape
    cap_fee = inv.get("fee_model") == "fixed_for_capacity"
    rows = [
        ("Infeed payout", inv["infeed_payout"], "MWh", 1,
         f"price model {inv.get('price_model') or '?'}"),
        ("Redispatch compensation", inv["redispatch_payout"], "MWh", 1,
         f"{inv.get('redispatch_qh', 0)} redispatched QHs, latest forecast x DSO price"),
        ("Marketing fee (deducted)", inv["fees"], "MW" if cap_fee else "MWh", -1,
         f"fee model {inv.get('fee_model') or '?'}"
         + (f", {_num(inv.get('covered_days'))} of {inv.get('month_days')} days of the month"
            if cap_fee and inv.get("covered_days") is not None else "")),
    ]
    body = []
    for label, entry, unit, sign, note in rows:
        unit_price = entry["unit_price_eur"]
        body.append(
            f"<tr><td>{e(label)}<br><small>{e(note)}</small></td><td class=n>{e(_num(entry['quantity'], unit))}</td>"
            f"<td class=n>{e('' if unit_price is None else f'{unit_price:,.4f} EUR/{unit}')}</td>"
            f"<td class=n>{e(_eur(entry['net_eur'], sign))}</td><td class=n>{e(_eur(entry['vat_eur'], sign))}</td>"
            f"<td class=n>{e(_eur(entry['gross_eur'], sign))}</td></tr>")
    status = inv["status"].upper()
    marker = " &middot; PROVISIONAL" if inv["provisional"] else ""
    errors = "".join(f"<li>{e(x)}</li>" for x in inv["errors"])
    notes = []
    if inv["unpriced_qh"]:
        notes.append(f"{inv['unpriced_qh']} quarter-hours without a public VWAP are not priced.")
    if inv.get("redispatch_unpriced_qh"):
        notes.append(f"{inv['redispatch_unpriced_qh']} redispatched quarter-hours without a DSO compensation price.")
    if inv["provisional"]:
        notes.append("Provisional: some quarter-hours are not yet based on the DSO's final measurement.")
    if inv.get("complete") is False:
        notes.append(f"Data reaches {inv.get('qh_count')} of the period's {inv.get('period_qh_count')} quarter-hours.")
    version = f"version {inv['version']} ({inv['state']})" if "version" in inv else "not recorded"
    issued = (issued_at or dt.datetime.now(tz=UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Invoice {e(inv['contract_id'])} {e(inv['month'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ccc;padding:.3em .5em;text-align:left}}.n{{text-align:right}}
.error{{color:#b00}}.prov{{color:#a60}}</style></head><body>
<h1>Invoice {e(inv['contract_id'])} &middot; {e(inv['month'])}
<span class="{'error' if inv['status'] == 'error' else 'prov' if inv['provisional'] else ''}">[{status}{marker}]</span></h1>
<table>
<tr><th>From</th><td>{e(ISSUER)}</td></tr>
<tr><th>To</th><td>Owner of asset {e(inv['asset_id'])}, {e(inv.get('email') or '(no email in the CRM)')}</td></tr>
<tr><th>Contract</th><td>{e(inv['contract_id'])}, asset {e(inv['asset_id'])}</td></tr>
<tr><th>Period</th><td>{e(inv.get('period_first_day', ''))} to {e(inv.get('period_last_day', ''))} (Europe/Berlin),
{e(str(inv.get('qh_count', '')))} quarter-hours invoiced, {e(_num(inv['volume_mwh'], 'MWh'))}</td></tr>
<tr><th>Document</th><td>{e(version)}, issued {e(issued)}</td></tr>
</table>
<h2>Entries</h2>
<table><tr><th>Entry</th><th class=n>Quantity</th><th class=n>Unit net price</th><th class=n>Net</th>
<th class=n>VAT 19 %</th><th class=n>Gross</th></tr>
{''.join(body)}
<tr><th>Total (payouts minus fees)</th><td></td><td></td><th class=n>{e(_eur(inv.get('total_net_eur')))}</th>
<th class=n>{e(_eur(inv.get('total_vat_eur')))}</th><th class=n>{e(_eur(inv['total_gross_eur']))}</th></tr>
</table>
{''.join(f'<p>{e(n)}</p>' for n in notes)}
{f'<h2 class="error">Errors: this contract cannot be invoiced until fixed</h2><ul class="error">{errors}</ul>' if errors else ''}
</body></html>
"""


def write_documents(invoices: list[dict], out_dir: Path) -> list[Path]:
    """``invoices.json`` and one HTML document per invoice in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_text(out_dir / "invoices.json", _json(invoices))
    now = dt.datetime.now(tz=UTC)
    paths = []
    for inv in invoices:
        p = out_dir / document_name(inv)
        _write_text(p, render_html(inv, now))
        paths.append(p)
    return paths


def run_invoices(database_url: str, year: int, month: int, out_dir: Path) -> int:
    """``intraday invoices --month YYYY-MM``: compute, record, write; 0, or 4 if some invoice is in error."""
    with connect(database_url) as conn:
        invoices = issue_invoices(conn, year, month)
    label = f"{year:04d}-{month:02d}"
    out_dir = Path(out_dir)
    paths = write_documents(invoices, out_dir)
    if not invoices:
        print(f"no invoices for {label}: no contract of the newest CRM file covers the month")
    for inv, path in zip(invoices, paths, strict=True):
        total = "-" if inv["total_gross_eur"] is None else f"{inv['total_gross_eur']:.2f} EUR"
        flag = " provisional" if inv["provisional"] else ""
        print(f"{inv['contract_id']} {inv['month']}: {inv['status']}{flag}, {inv['volume_mwh']} MWh, "
              f"total {total}, version {inv['version']} ({inv['state']}) -> {path}")
    print(f"{out_dir / 'invoices.json'}: {len(invoices)} invoices")
    bad = [inv for inv in invoices if inv["status"] == "error"]
    if bad:
        which = "; ".join(f"{inv['contract_id']} ({', '.join(inv['errors'])})" for inv in bad)
        print(f"intraday: {len(bad)} of {len(invoices)} invoices for {label} are in status error: {which}",
              file=sys.stderr)
        return EXIT_INVOICE_ERROR
    return 0
