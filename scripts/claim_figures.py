"""Extracts the figures of an insurance claim for the `claim_figures` topic: amounts with their
currency, and dates, found by regular expressions in the claim's text.

procos protocol (`mode: warm`): procos imports this file once and calls handle(task) per task,
task = {"variables": {"text": ...}, ...}; the returned object is the result:
  {"amounts": [{"value": 1200.0, "currency": "EUR"}], "total": 1200.0, "currency": "EUR",
   "dates": ["2024-03-12"]}
"""
import json
import re
import sys

MONTHS = {m: i + 1 for i, m in enumerate(
    "january february march april may june july august september october november december".split()
)}
SYMBOLS = {"€": "EUR", "$": "USD", "£": "GBP"}
NUMBER = r"\d{1,3}(?:[,. ]\d{3})*(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"


def to_float(raw):
    raw = raw.replace(" ", "")
    # "1.200,50" (European) or "1,200.50" (English): the last separator followed by 1-2 digits
    # is the decimal point; every other separator groups thousands.
    m = re.match(r"^(.*)[.,](\d{1,2})$", raw)
    whole, cents = (m.group(1), m.group(2)) if m else (raw, "")
    whole = re.sub(r"[.,]", "", whole)
    return float(f"{whole}.{cents}" if cents else whole)


def handle(task):
    text = str(task["variables"].get("text") or "")

    amounts = []
    for m in re.finditer(rf"(?P<sym>[€$£])\s?(?P<a>{NUMBER})|(?P<b>{NUMBER})\s?(?P<cur>EUR|USD|GBP|CHF|euros?|dollars?)\b", text, re.I):
        if m.group("sym"):
            value, currency = m.group("a"), SYMBOLS[m.group("sym")]
        else:
            value, currency = m.group("b"), m.group("cur").upper()
            currency = {"EURO": "EUR", "EUROS": "EUR", "DOLLAR": "USD", "DOLLARS": "USD"}.get(currency, currency)
        amounts.append({"value": to_float(value), "currency": currency})

    dates = []
    for m in re.finditer(r"\b(\d{4})-(\d{2})-(\d{2})\b", text):
        dates.append(m.group(0))
    for m in re.finditer(r"\b(\d{1,2})\.(\d{1,2})\.(\d{4})\b", text):
        dates.append(f"{m.group(3)}-{int(m.group(2)):02d}-{int(m.group(1)):02d}")
    for m in re.finditer(r"\b(\d{1,2})\s+([A-Za-z]+)\s+(\d{4})\b", text):
        month = MONTHS.get(m.group(2).lower())
        if month:
            dates.append(f"{m.group(3)}-{month:02d}-{int(m.group(1)):02d}")

    currencies = {a["currency"] for a in amounts}
    return {
        "amounts": amounts,
        "total": round(sum(a["value"] for a in amounts), 2),
        "currency": currencies.pop() if len(currencies) == 1 else None,
        "dates": sorted(set(dates)),
    }


if __name__ == "__main__":
    # mode: process — the same function as a stdin -> stdout program.
    json.dump(handle(json.load(sys.stdin)), sys.stdout)
