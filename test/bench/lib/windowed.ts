/** Runs `one(i)` for i < n with exactly `inflight` outstanding (closed loop per lane); the number that failed. */
export async function windowed(n: number, inflight: number, one: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  let errors = 0;
  const lane = async () => {
    while (next < n) {
      const i = next++;
      try {
        await one(i);
      } catch (err) {
        if (errors++ < 3) console.error("[client] run failed:", err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(inflight, n) }, lane));
  return errors;
}
