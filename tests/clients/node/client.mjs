// The official Camunda 7 JS external task client (camunda-external-task-client-js, pinned in
// package.json / package-lock.json) as a user runs it: DEFAULT settings, only the base URL and
// the worker id set. tests/e2e_clients.rs runs it against `procos engine` and checks what it did
// through the engine's REST API.
//
//   node client.mjs <baseUrl> <workerId>
//
// Prints one JSON line per outcome on stdout ({"outcome": …, "task": …, "pi": …, …}); the client's
// own log and errors go to stderr. Reads "release <taskId>" lines on stdin (see topic "slow").
// Runs until killed.
//
// Topics (the models are in ../bpmn/):
//   typed     complete with one variable of each type: String, Integer, Long, Double, Boolean,
//             Json, Date, File
//   flaky     handleFailure with retries counted down from 1 and a 300 ms retryTimeout: the task
//             comes back once, then the engine raises an incident
//   risky     handleBpmnError REJECTED with a variable; rejected: complete (error path only)
//   slow      extendLock by one hour, then wait for "release <taskId>" on stdin and complete
//   read      read the variables the instance was started with (getAllTyped: the client's
//             typed view: Date objects, parsed Json) and complete with Json "seen" = {name:
//             {type, value}} (dates as ISO strings)
//   download  load the File variable "doc" the instance was started with, complete with its text

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";

import { Client, File, Variables } from "camunda-external-task-client-js";

const [baseUrl, workerId] = process.argv.slice(2);
if (!baseUrl || !workerId) {
  console.error("usage: node client.mjs <baseUrl> <workerId>");
  process.exit(2);
}

const emit = (outcome, task, extra = {}) =>
  process.stdout.write(
    JSON.stringify({
      outcome,
      task: task?.id ?? null,
      pi: task?.processInstanceId ?? null,
      ...extra,
    }) + "\n"
  );

// What went wrong, with the engine's answer when there is one (EngineError).
const describe = (e) => ({
  error: String(e?.message ?? e),
  status: e?.httpStatusCode ?? null,
  body: e?.response?.body?.toString?.() ?? null,
});

// Task ids the test has released (stdin "release <id>"), and the handlers waiting for them.
const released = new Set();
const waiting = new Map();
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, id] = line.trim().split(/\s+/);
  if (command !== "release" || !id) return;
  released.add(id);
  waiting.get(id)?.();
});
const releasedFor = (id) =>
  released.has(id) ? Promise.resolve() : new Promise((r) => waiting.set(id, r));

const client = new Client({ baseUrl, workerId });

client.on("poll:error", (e) => emit("poll_error", null, describe(e)));
for (const call of ["complete", "handleFailure", "handleBpmnError", "extendLock"]) {
  client.on(`${call}:error`, (task, e) => emit(`${call}_error`, task, describe(e)));
}

// Wraps a handler so that a throw becomes an outcome line instead of a silent event.
const handle = (topic, fn) =>
  client.subscribe(topic, async ({ task, taskService }) => {
    try {
      await fn(task, taskService);
    } catch (e) {
      emit("handler_error", task, { topic, ...describe(e) });
    }
  });

const FILE_TEXT = "a file from the JS client\n";

handle("typed", async (task, taskService) => {
  const localPath = path.join(
    fs.mkdtempSync(path.join(os.tmpdir(), "procos-js-client-")),
    "report.txt"
  );
  fs.writeFileSync(localPath, FILE_TEXT);
  const file = await new File({ localPath, mimetype: "text/plain" }).load();
  const variables = new Variables()
    .set("str", "procos ✓")
    .set("int", 42)
    .set("long", 2 ** 40)
    .set("dbl", 3.25)
    .set("bool", true)
    .set("json", { a: 1, list: [1, "two", null] })
    .set("date", new Date("2025-01-23T14:42:45.000Z"))
    .set("file", file);
  await taskService.complete(task, variables);
  emit("completed", task, { sent: variables.getDirtyVariables().file.type });
});

handle("flaky", async (task, taskService) => {
  const retries = task.retries == null ? 1 : task.retries - 1;
  await taskService.handleFailure(task, {
    errorMessage: `flaky failed, ${retries} retries left`,
    errorDetails: `details of the attempt with retries ${task.retries}`,
    retries,
    retryTimeout: 300,
  });
  emit("failed", task, { retries_seen: task.retries ?? null, retries_sent: retries, at: Date.now() });
});

handle("risky", async (task, taskService) => {
  await taskService.handleBpmnError(
    task,
    "REJECTED",
    "risk too high",
    new Variables().set("reason", "too risky")
  );
  emit("bpmn_error", task);
});

handle("rejected", async (task, taskService) => {
  await taskService.complete(task, new Variables().set("handledBy", "rejected_step"));
  emit("completed", task, { topic: "rejected" });
});

handle("slow", async (task, taskService) => {
  await taskService.extendLock(task, 3_600_000);
  emit("extended", task, { newDuration: 3_600_000 });
  await releasedFor(task.id);
  await taskService.complete(task, new Variables().set("slowDone", true));
  emit("completed", task, { topic: "slow" });
});

handle("read", async (task, taskService) => {
  const seen = {};
  for (const [name, typed] of Object.entries(task.variables.getAllTyped())) {
    const value = typed.value instanceof Date ? typed.value.toISOString() : typed.value;
    seen[name] = { type: typed.type, value };
  }
  await taskService.complete(task, new Variables().set("seen", seen));
  emit("read", task, { seen });
});

handle("download", async (task, taskService) => {
  const file = task.variables.get("doc");
  await file.load();
  const text = Buffer.from(file.content).toString("utf-8");
  await taskService.complete(
    task,
    new Variables().set("docText", text).set("docName", file.filename)
  );
  emit("downloaded", task, { text, filename: file.filename });
});
