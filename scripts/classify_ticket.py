"""Keyword classifier for the `classify_ticket` topic: the last fallback after the AI endpoints,
so that the support-ticket example also runs with no model at all (e.g. under `procos dev`).

procos imports it once (`mode: warm`) and calls handle(task), which returns {"category",
"urgency"} as the topic's schema wants; run as a program, it reads the task on stdin instead.
"""
import json
import sys

BILLING = ("invoice", "charge", "charged", "refund", "payment", "bill", "price")
TECHNICAL = ("error", "crash", "bug", "login", "password", "install", "broken", "slow")
URGENT = ("urgent", "asap", "immediately", "down", "outage", "twice")


def handle(task):
    v = task["variables"]
    text = f"{v.get('subject') or ''} {v.get('text') or ''}".lower()
    if any(w in text for w in BILLING):
        category = "billing"
    elif any(w in text for w in TECHNICAL):
        category = "technical"
    else:
        category = "other"
    urgency = "high" if any(w in text for w in URGENT) else "normal"
    return {"category": category, "urgency": urgency}


if __name__ == "__main__":
    # mode: process — the same function as a stdin -> stdout program.
    json.dump(handle(json.load(sys.stdin)), sys.stdout)
