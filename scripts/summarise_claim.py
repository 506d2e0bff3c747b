"""Summarises an insurance claim for the `claim_summary` topic, without any language model.

The fallback of the AI pool's `claim_summary` topic: when neither OpenAI nor Ollama is usable,
this script answers with an extractive summary, so the claim example runs anywhere.
It scores each sentence by how many of the claim's frequent words it holds and keeps the best
two, in their original order.

procos protocol (`mode: warm`): procos imports this file once and calls handle(task) per task
(task = {"variables": {...}, ...}); it returns {"summary": "...", "method": "extractive"}.
"""
import json
import re
import sys
from collections import Counter

STOP = set(
    "a an and are as at be been by for from has have i in is it its my of on or our that the "
    "their there this to was were which while with we you your he she they them his her".split()
)


def handle(task):
    text = str(task["variables"].get("text") or "").strip()
    if not text:
        print("variable `text` is empty: nothing to summarise", file=sys.stderr)
        sys.exit(2)  # a usage error: retrying will not help

    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    words = [w for w in re.findall(r"[a-zA-Z']+", text.lower()) if w not in STOP and len(w) > 2]
    freq = Counter(words)

    def score(sentence):
        tokens = [w for w in re.findall(r"[a-zA-Z']+", sentence.lower()) if w in freq]
        return sum(freq[w] for w in tokens) / (len(tokens) + 1)

    best = sorted(range(len(sentences)), key=lambda i: score(sentences[i]), reverse=True)[:2]
    summary = " ".join(sentences[i] for i in sorted(best))
    return {"summary": summary, "method": "extractive"}


if __name__ == "__main__":
    # mode: process — the same function as a stdin -> stdout program.
    json.dump(handle(json.load(sys.stdin)), sys.stdout)
