import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { toJson } from "../format.ts";

/** A run or task status as a coloured badge. */
export function StatusBadge({ status }: { status: string }) {
  return <span class={`badge s-${status.toLowerCase()}`}>{status}</span>;
}

/** Pretty-printed JSON in a scrollable block. */
export function Json({ value, testid }: { value: unknown; testid?: string }) {
  return (
    <pre class="json" data-testid={testid}>
      {toJson(value)}
    </pre>
  );
}

/** An error from a load, inline. */
export function ErrorNote({ error }: { error: Error | undefined }) {
  if (!error) return null;
  return (
    <div class="note error" role="alert">
      {error.message}
    </div>
  );
}

/** The one row a table shows when it has nothing to list (and is not loading). */
export function EmptyRow({ cols, show, children }: { cols: number; show: boolean; children: ComponentChildren }) {
  if (!show) return null;
  return (
    <tr>
      <td colSpan={cols} class="empty">
        {children}
      </td>
    </tr>
  );
}

/**
 * A modal dialog (the native `<dialog>`, so focus is trapped and Escape closes it). `onClose` is called for Escape,
 * the close button and a click on the backdrop.
 */
export function Modal({
  title,
  onClose,
  children,
  testid,
}: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  testid?: string;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);
  return (
    // biome-ignore lint/a11y/useKeyWithClickEvents: the keyboard closes it with Escape (onCancel)
    <dialog
      ref={ref}
      class="modal"
      data-testid={testid}
      aria-label={title}
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
      // A click on the backdrop (the dialog element itself, outside its body) closes; Escape is the cancel event.
      onClick={(e) => {
        if (e.target === ref.current) onClose();
      }}
    >
      <div class="modal-body">
        <header>
          <h2>{title}</h2>
          <button type="button" class="icon" aria-label="close" onClick={onClose}>
            ×
          </button>
        </header>
        {children}
      </div>
    </dialog>
  );
}

/** Asks before doing something: `confirmLabel` runs `onConfirm`; its error is shown and the dialog stays. */
export function Confirm({
  title,
  children,
  confirmLabel,
  danger,
  onConfirm,
  onClose,
}: {
  title: string;
  children: ComponentChildren;
  confirmLabel: string;
  danger?: boolean;
  /** The action: while it runs the button is disabled; what it throws is shown in the dialog. */
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const confirm = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await onConfirm();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal title={title} onClose={onClose} testid="confirm-dialog">
      <div class="modal-content">{children}</div>
      {error && (
        <div class="note error" role="alert">
          {error}
        </div>
      )}
      <footer>
        <button type="button" onClick={onClose}>
          Keep as is
        </button>
        <button type="button" class={danger ? "danger" : "primary"} disabled={busy} onClick={confirm}>
          {busy ? "Working…" : confirmLabel}
        </button>
      </footer>
    </Modal>
  );
}
