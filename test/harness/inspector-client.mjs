// Attaches to a Node process started with --inspect-brk (run with `node --experimental-websocket`): lets it run,
// and at the first pause inside the file named by argv[3] prints where it stopped and the task's input, then resumes
// and detaches.
// Prints {"hit":false} if the process ends without stopping there.
const [url, target] = process.argv.slice(2);
const ws = new WebSocket(url);
let id = 0;
const pending = new Map();
const send = (method, params = {}) =>
  new Promise((resolve) => {
    const n = ++id;
    pending.set(n, resolve);
    ws.send(JSON.stringify({ id: n, method, params }));
  });
let hit = false;
/** Script URLs by id: a paused frame names its script by id (its own `url` may be empty). */
const scripts = new Map();
ws.onmessage = async ({ data }) => {
  const msg = JSON.parse(data);
  if (msg.method === "Debugger.scriptParsed") scripts.set(msg.params.scriptId, msg.params.url);
  if (msg.id && pending.has(msg.id)) {
    pending.get(msg.id)(msg.result);
    pending.delete(msg.id);
    return;
  }
  if (msg.method !== "Debugger.paused") return;
  if (process.env.INSPECT_TRACE)
    process.stderr.write(
      `paused ${msg.params.reason} ${scripts.get(msg.params.callFrames[0]?.location.scriptId)}:${msg.params.callFrames[0]?.location.lineNumber} ${msg.params.callFrames[0]?.functionName}\n`,
    );
  const frame = msg.params.callFrames[0];
  const url = frame.url || scripts.get(frame.location.scriptId) || "";
  if (!hit && url.includes(target)) {
    hit = true;
    const input = await send("Debugger.evaluateOnCallFrame", {
      callFrameId: frame.callFrameId,
      expression: "JSON.stringify(input)",
    });
    process.stdout.write(`${JSON.stringify({ hit: true, url, input: JSON.parse(input.result.value) })}\n`);
    // Detached, the process runs on and exits (attached, it would wait at exit for the debugger to leave).
    await send("Debugger.resume");
    ws.close();
    return;
  }
  await send("Debugger.resume");
};
ws.onopen = async () => {
  await send("Runtime.enable");
  await send("Debugger.enable");
  await send("Runtime.runIfWaitingForDebugger");
};
ws.onclose = () => {
  if (!hit) process.stdout.write(`${JSON.stringify({ hit: false })}\n`);
  process.exit(0);
};
ws.onerror = () => undefined;
