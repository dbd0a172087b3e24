/** Node's longest timer delay: it takes the delay as 32 bits and fires a longer one at once. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * `setTimeout` for any delay (an execution timeout of 600h, a wait of 30 days): a delay longer than Node's timers take
 * is waited out in several. Returns what cancels it.
 */
export function longTimeout(fn: () => void, ms: number, unref = false): () => void {
  const at = Date.now() + ms;
  let handle: NodeJS.Timeout;
  const arm = (delay: number) => {
    handle = setTimeout(() => (delay > MAX_TIMEOUT_MS ? arm(at - Date.now()) : fn()), Math.min(delay, MAX_TIMEOUT_MS));
    if (unref) handle.unref();
  };
  arm(ms);
  return () => clearTimeout(handle);
}
