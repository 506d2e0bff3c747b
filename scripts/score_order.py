"""Scores an order for the `score_order` topic.

procos protocol: the task arrives as JSON on stdin
  {"variables": {...}, "properties": {...}, "business_key": ..., "task": {...}}
and the result goes to stdout as one JSON object. A business outcome is
  {"bpmn_error": {"code": "...", "message": "..."}}
Anything on stderr ends up in the task's errorDetails when the script fails.
"""
import json
import sys

task = json.load(sys.stdin)
variables = task["variables"]
amount = float(variables["amount"])
if amount < 0:
    json.dump({"bpmn_error": {"code": "INVALID_ORDER", "message": f"amount {amount} is negative"}}, sys.stdout)
    sys.exit(0)

# A toy score: small orders are approved straight away, large ones go to a person.
score = max(0.0, min(100.0, 100.0 - amount / 100.0))
decision = "approve" if score >= 50 else "review"
json.dump({"score": round(score, 2), "decision": decision}, sys.stdout)
