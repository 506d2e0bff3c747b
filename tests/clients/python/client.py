"""The community Python external task clients as a user runs them: DEFAULT settings, only the
base URL, the worker id and the topics set. tests/e2e_clients.rs runs this against
`procos engine` and checks what it did through the engine's REST API.

    python client.py <camunda|operaton> <baseUrl> <workerId>

`camunda` is camunda-external-task-client-python3 (module `camunda`), `operaton` is
operaton-external-task-client-python3 (module `operaton`, the same code renamed); both are pinned
in requirements.txt. Prints one JSON line per outcome on stdout ({"outcome": ..., "task": ...,
"pi": ..., ...}) when the handler hands its result to the client, which then makes the call
(the test checks the call's effect in the engine); the client's own log goes to stderr. A
refused poll prints a "poll_error" line. Runs until killed.

Topics (the models are in ../bpmn/):
  typed     complete with String, Integer, Long, Double, Boolean (plain values: the client sends
            them untyped and the engine infers the type, as Camunda does), Json, Date, File
            (typed dicts, the client's way to send a type)
  flaky     task.failure with max_retries 1 and retry timeout 0: the client counts the task's
            retries down, the task comes back once, then the engine raises an incident. (With a
            retry timeout > 0 the task would come back only when the client's next long poll
            ends: its default asyncResponseTimeout is 30 s, and Camunda 7.23 re-checks a pending
            poll only when a task is created or unlocked, or every 30 s; procos engine does the
            same. That holds the test half a minute for nothing; the JS client, which does not
            long-poll by default, checks a 300 ms retry timeout.)
  risky     task.bpmn_error REJECTED with a variable; rejected: complete (error path only)
  read      the variables the instance was started with, as the fetched task carries them
            (get_variable(name, with_meta=True): the wire type and value; the client fetches with
            deserializeValues true by default); complete with Json "seen" = {name: {type, value}}
  download  the File variable "doc" the instance was started with, through the client's
            EngineClient.get_process_instance_variable (the only download these clients offer);
            complete with its text

These clients have no extendLock (neither the sync nor the async client sends one), so there is
no "slow" topic here.
"""

import base64
import importlib
import json
import logging
import sys
import time


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("camunda", "operaton"):
        sys.exit("usage: client.py <camunda|operaton> <baseUrl> <workerId>")
    package, base_url, worker_id = sys.argv[1:]
    worker_mod = importlib.import_module(f"{package}.external_task.external_task_worker")
    engine_mod = importlib.import_module(f"{package}.client.engine_client")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    def emit(outcome, task, **extra):
        line = {"outcome": outcome, "task": None, "pi": None}
        if task is not None:
            line["task"] = task.get_task_id()
            line["pi"] = task.get_process_instance_id()
        line.update(extra)
        print(json.dumps(line), flush=True)

    def typed(task):
        file_text = f"a file from the {package} Python client\n"
        result = task.complete({
            "str": "procos ✓",
            "int": 42,
            "long": 2 ** 40,
            "dbl": 3.25,
            "bool": True,
            "json": {"value": json.dumps({"a": 1, "list": [1, "two", None]}), "type": "Json"},
            "date": {"value": "2025-01-23T14:42:45.000+0000", "type": "Date"},
            "file": {
                "value": base64.b64encode(file_text.encode()).decode(),
                "type": "File",
                "valueInfo": {"filename": "report.txt", "mimeType": "text/plain", "encoding": "UTF-8"},
            },
        })
        emit("completed", task)
        return result

    def flaky(task):
        seen = task._context.get("retries")
        result = task.failure(
            error_message=f"flaky failed, seen retries {seen}",
            error_details=f"details of the attempt with retries {seen}",
            max_retries=1,
            retry_timeout=0,
        )
        emit("failed", task, retries_seen=seen, retries_sent=result.retries, at=int(time.time() * 1000))
        return result

    def risky(task):
        emit("bpmn_error", task)
        return task.bpmn_error("REJECTED", "risk too high", {"reason": "too risky"})

    def rejected(task):
        emit("completed", task, topic="rejected")
        return task.complete({"handledBy": "rejected_step"})

    def read(task):
        seen = {}
        for name in task.get_variables():
            meta = task.get_variable(name, with_meta=True)
            seen[name] = {"type": meta.get("type"), "value": meta.get("value")}
        emit("read", task, seen=seen)
        return task.complete({"seen": {"value": json.dumps(seen), "type": "Json"}})

    engine = engine_mod.EngineClient(base_url)

    def download(task):
        doc = engine.get_process_instance_variable(task.get_process_instance_id(), "doc", with_meta=True)
        text = base64.b64decode(doc["value"]).decode("utf-8")
        filename = (doc.get("valueInfo") or {}).get("filename")
        emit("downloaded", task, text=text, filename=filename)
        return task.complete({"docText": text, "docName": filename})

    handlers = {"typed": typed, "flaky": flaky, "risky": risky, "rejected": rejected, "read": read,
                "download": download}

    def handle(task):
        try:
            return handlers[task.get_topic_name()](task)
        except Exception as e:  # an outcome line instead of a log line only
            emit("handler_error", task, error=repr(e))
            raise

    worker = worker_mod.ExternalTaskWorker(worker_id=worker_id, base_url=base_url)
    fetch_and_lock = worker.client.fetch_and_lock

    def observed_fetch_and_lock(*args, **kwargs):
        # Observes only: a refused poll becomes an outcome line, then the worker handles it as
        # it always does (it logs and sleeps its default 300 s before the next poll).
        try:
            return fetch_and_lock(*args, **kwargs)
        except Exception as e:
            emit("poll_error", None, error=str(e))
            raise

    worker.client.fetch_and_lock = observed_fetch_and_lock
    worker.subscribe(list(handlers), handle)


if __name__ == "__main__":
    main()
