import { useEffect, useState } from "preact/hooks";
import { ApiError, type TriggerRequest } from "../api.ts";
import { parseJsonObject, toJson } from "../format.ts";
import { useApp } from "../live.ts";
import { Modal } from "./common.tsx";

/** Triggers a run of a task with JSON input: edit, review (confirm), then send; the API's errors are shown. */
export function TriggerDialog({ onClose, task: initialTask = "" }: { onClose: () => void; task?: string }) {
  const { api, toast } = useApp();
  const [task, setTask] = useState(initialTask);
  const [input, setInput] = useState("{\n  \n}");
  const [metadata, setMetadata] = useState("");
  const [priority, setPriority] = useState("");
  const [tasks, setTasks] = useState<string[]>([]);
  const [review, setReview] = useState<TriggerRequest>();
  const [errors, setErrors] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    // Suggestions: what live workers registered.
    api
      .workers()
      .then((ws) => setTasks([...new Set(ws.flatMap((w) => w.tasks))].sort()))
      .catch(() => undefined);
  }, [api]);

  const check = () => {
    const problems: string[] = [];
    if (!task.trim()) problems.push("task: name the task to run");
    const i = parseJsonObject(input, "input");
    const m = parseJsonObject(metadata, "metadata");
    if ("error" in i) problems.push(i.error);
    if ("error" in m) problems.push(m.error);
    else
      for (const [k, v] of Object.entries(m.value))
        if (typeof v !== "string") problems.push(`metadata.${k}: must be a string`);
    setErrors(problems);
    if (problems.length || "error" in i || "error" in m) return;
    setReview({
      task: task.trim(),
      input: i.value,
      ...(Object.keys(m.value).length ? { additionalMetadata: m.value as Record<string, string> } : {}),
      ...(priority ? { priority: Number(priority) } : {}),
    });
  };

  const send = async () => {
    if (!review) return;
    setBusy(true);
    try {
      const { runId } = await api.trigger(review);
      toast(`Triggered ${review.task}: run ${runId}`);
      onClose();
    } catch (err) {
      const e = err as ApiError;
      const details =
        e instanceof ApiError && Array.isArray(e.details) ? (e.details as { path?: string; message?: string }[]) : [];
      setErrors([
        `${e.message}${e instanceof ApiError ? ` (${e.code})` : ""}`,
        ...details.map((d) => `${d.path ?? ""}: ${d.message ?? ""}`),
      ]);
      setReview(undefined);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Modal title={review ? "Trigger this run?" : "Trigger a run"} onClose={onClose} testid="trigger-dialog">
      {review ? (
        <div class="modal-content">
          <p>
            Run task <b>{review.task}</b>
            {review.priority ? ` at priority ${review.priority}` : ""} with input:
          </p>
          <pre class="json">{toJson(review.input)}</pre>
          {review.additionalMetadata ? <pre class="json">{toJson(review.additionalMetadata)}</pre> : null}
        </div>
      ) : (
        <form
          class="modal-content form"
          onSubmit={(e) => {
            e.preventDefault();
            check();
          }}
        >
          <label>
            Task
            <input
              name="task"
              list="tj-tasks"
              value={task}
              required
              onInput={(e) => setTask((e.target as HTMLInputElement).value)}
            />
            <datalist id="tj-tasks">
              {tasks.map((t) => (
                <option key={t} value={t} />
              ))}
            </datalist>
          </label>
          <label>
            Input (JSON object)
            <textarea
              name="input"
              rows={8}
              spellcheck={false}
              value={input}
              onInput={(e) => setInput((e.target as HTMLTextAreaElement).value)}
            />
          </label>
          <label>
            Metadata (JSON object of strings, optional)
            <textarea
              name="metadata"
              rows={2}
              spellcheck={false}
              value={metadata}
              placeholder='{ "source": "dashboard" }'
              onInput={(e) => setMetadata((e.target as HTMLTextAreaElement).value)}
            />
          </label>
          <label>
            Priority
            <select value={priority} onChange={(e) => setPriority((e.target as HTMLSelectElement).value)}>
              <option value="">task default</option>
              <option value="1">1 (low)</option>
              <option value="2">2</option>
              <option value="3">3 (high)</option>
            </select>
          </label>
          <button type="submit" hidden />
        </form>
      )}
      {errors.length ? (
        <ul class="note error" role="alert" data-testid="trigger-errors">
          {errors.map((e) => (
            <li key={e}>{e}</li>
          ))}
        </ul>
      ) : null}
      <footer>
        {review ? (
          <>
            <button type="button" onClick={() => setReview(undefined)}>
              ← Edit
            </button>
            <button type="button" class="primary" disabled={busy} onClick={() => void send()}>
              {busy ? "Triggering…" : "Trigger"}
            </button>
          </>
        ) : (
          <>
            <button type="button" onClick={onClose}>
              Cancel
            </button>
            <button type="button" class="primary" onClick={check}>
              Review…
            </button>
          </>
        )}
      </footer>
    </Modal>
  );
}
