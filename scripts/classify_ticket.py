"""Keyword classifier for the `classify_ticket` topic: the last fallback after the AI endpoints,
so that the support-ticket example also runs with no model at all (e.g. under `procos dev`).

Reads the task as JSON on stdin, prints {"category", "urgency"} as the topic's schema wants.
"""
import json
import sys

task = json.load(sys.stdin)
v = task["variables"]
text = f"{v.get('subject') or ''} {v.get('text') or ''}".lower()

BILLING = ("invoice", "charge", "charged", "refund", "payment", "bill", "price")
TECHNICAL = ("error", "crash", "bug", "login", "password", "install", "broken", "slow")
URGENT = ("urgent", "asap", "immediately", "down", "outage", "twice")

if any(w in text for w in BILLING):
    category = "billing"
elif any(w in text for w in TECHNICAL):
    category = "technical"
else:
    category = "other"
urgency = "high" if any(w in text for w in URGENT) else "normal"
json.dump({"category": category, "urgency": urgency}, sys.stdout)
