"""The peer benchmark's Python row (benches/peers.rs): the community Python client
(PyPI camunda-external-task-client-python3, pinned in tests/clients/python) draining one topic
with a no-op action that completes each task.

    python worker.py <baseUrl> <topic>

The client's defaults (maxTasks 1, long polling 30 s, one task at a time), with one
change: `sorting: []`, because its default `"sorting": null` is refused by the in-repo engine
(real Camunda takes it). Runs until killed."""
import logging
import sys

from camunda.external_task.external_task_worker import ExternalTaskWorker

logging.disable(logging.CRITICAL)


def action(task):
    return task.complete({})


ExternalTaskWorker("bench-python", base_url=sys.argv[1], config={"sorting": []}).subscribe(
    [sys.argv[2]], action
)
