// The peer benchmark's JS row (benches/peers.rs): the official Camunda 7 JS external task client
// (camunda-external-task-client-js, pinned in tests/clients/node) draining one topic with a no-op
// handler that completes each task, as a user writes it.
//
//   node bench-worker.mjs <baseUrl> <topic> default|tuned
//
// default: only baseUrl and workerId set — maxTasks 10, interval 300 ms, no long polling.
// tuned:   what the client's docs allow for throughput — maxTasks 200, interval 0 (poll again
//          as soon as a fetch returned), long polling (asyncResponseTimeout 10 s), usePriority
//          off (the engine need not sort). maxParallelExecutions stays unset: bounding it makes
//          the client re-poll every `interval` while full, a busy loop at interval 0.
// bench/run copies this file next to target/test-clients/node/node_modules. Runs until killed.

import { Client } from "camunda-external-task-client-js";

const [baseUrl, topic, mode] = process.argv.slice(2);
if (!baseUrl || !topic || !["default", "tuned"].includes(mode)) {
  console.error("usage: node bench-worker.mjs <baseUrl> <topic> default|tuned");
  process.exit(2);
}

const options = { baseUrl, workerId: `bench-js-${mode}` };
if (mode === "tuned") {
  Object.assign(options, {
    maxTasks: 200,
    interval: 0,
    asyncResponseTimeout: 10000,
    usePriority: false,
  });
}

const client = new Client(options);
client.on("complete:error", (_task, e) => console.error(`complete failed: ${e}`));
client.on("poll:error", (e) => console.error(`poll failed: ${e}`));
client.subscribe(topic, async ({ task, taskService }) => {
  await taskService.complete(task);
});
