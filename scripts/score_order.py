"""Scores an order for the `score_order` topic.

procos protocol (`mode: warm`): procos imports this file once and calls handle(task) per task,
  task = {"variables": {...}, "properties": {...}, "business_key": ..., "task": {...}}
and the returned JSON-able value is the result. A business outcome is the return value
  {"bpmn_error": {"code": "...", "message": "..."}}
A raised exception fails the task (retried); what the script printed on stderr, with the
traceback, ends up in the task's errorDetails. Run as a program (`mode: process`), it reads the
task on stdin and prints the result.
"""
import json
import sys


def handle(task):
    variables = task["variables"]
    amount = float(variables["amount"])
    if amount < 0:
        return {"bpmn_error": {"code": "INVALID_ORDER", "message": f"amount {amount} is negative"}}

    # A toy score: small orders are approved straight away, large ones go to a person.
    score = max(0.0, min(100.0, 100.0 - amount / 100.0))
    decision = "approve" if score >= 50 else "review"
    return {"score": round(score, 2), "decision": decision}


if __name__ == "__main__":
    # mode: process — the same function as a stdin -> stdout program.
    json.dump(handle(json.load(sys.stdin)), sys.stdout)
