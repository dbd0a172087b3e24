import { useEffect, useMemo, useState } from "preact/hooks";
import { Api, ApiError, loadSession, type Session, saveSession, setUnauthorizedHandler } from "./api.ts";
import { Ctx, FeedBus } from "./live.ts";
import { QueuesPage } from "./pages/queues.tsx";
import { RunPage } from "./pages/run.tsx";
import { RunsPage } from "./pages/runs.tsx";
import { SchedulesPage } from "./pages/schedules.tsx";
import { WorkersPage } from "./pages/workers.tsx";
import { useRoute } from "./router.ts";

/** The dashboard: the token form until signed in, then the pages with one live feed for all of them. */
export function App() {
  const [session, setSession] = useState<Session | undefined>(loadSession);
  const [expired, setExpired] = useState(false);
  useEffect(() => {
    setUnauthorizedHandler(() => {
      saveSession(undefined);
      setSession(undefined);
      setExpired(true);
    });
  }, []);
  if (!session) {
    return (
      <SignIn
        expired={expired}
        onSignedIn={(s) => {
          saveSession(s);
          setExpired(false);
          setSession(s);
        }}
      />
    );
  }
  return (
    <Shell
      session={session}
      onSignOut={() => {
        saveSession(undefined);
        setSession(undefined);
      }}
    />
  );
}

function SignIn({ expired, onSignedIn }: { expired: boolean; onSignedIn: (s: Session) => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  return (
    <main class="signin">
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(undefined);
          try {
            onSignedIn(await Api.signIn(token.trim()));
          } catch (err) {
            setError(
              err instanceof ApiError && err.status === 401 ? "Unknown or revoked token." : (err as Error).message,
            );
          } finally {
            setBusy(false);
          }
        }}
      >
        <h1>
          <Logo /> Taskjet
        </h1>
        <p class="muted">
          Paste an API token of the namespace to watch. Make one with{" "}
          <code>taskjet tokens create --name dashboard --namespace &lt;ns&gt;</code>. It is kept in this tab only.
        </p>
        {expired ? <p class="note error">The token was refused (revoked?): sign in again.</p> : null}
        <label>
          API token
          <input
            name="token"
            type="password"
            autocomplete="off"
            required
            value={token}
            onInput={(e) => setToken((e.target as HTMLInputElement).value)}
          />
        </label>
        {error ? (
          <p class="note error" role="alert">
            {error}
          </p>
        ) : null}
        <button type="submit" class="primary" disabled={busy || !token.trim()}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

const NAV = [
  ["/runs", "Runs"],
  ["/workers", "Workers"],
  ["/queues", "Queues"],
  ["/schedules", "Crons & scheduled"],
] as const;

function Shell({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const api = useMemo(() => new Api(session), [session]);
  const feed = useMemo(() => new FeedBus(), []);
  const [live, setLive] = useState(false);
  const [toasts, setToasts] = useState<{ id: number; message: string; kind: "ok" | "error" }[]>([]);
  const route = useRoute();
  useEffect(
    () =>
      api.follow({
        onEvents: (events) => feed.emit(events),
        onReset: () => feed.emit("reset"),
        onState: setLive,
      }),
    [api, feed],
  );
  const ctx = useMemo(
    () => ({
      api,
      feed,
      toast: (message: string, kind: "ok" | "error" = "ok") => {
        const id = Math.random();
        setToasts((t) => [...t, { id, message, kind }]);
        setTimeout(() => setToasts((t) => t.filter((x) => x.id !== id)), 5000);
      },
    }),
    [api, feed],
  );
  const runMatch = /^\/runs\/([^/]+)$/.exec(route.path);
  let page = <RunsPage params={route.query} />;
  if (runMatch) {
    const runId = decodeURIComponent(runMatch[1] as string);
    page = <RunPage key={runId} runId={runId} />;
  } else if (route.path === "/workers") page = <WorkersPage />;
  else if (route.path === "/queues") page = <QueuesPage />;
  else if (route.path === "/schedules") page = <SchedulesPage />;
  return (
    <Ctx.Provider value={ctx}>
      <header class="top">
        <a class="brand" href="#/runs">
          <Logo /> Taskjet
        </a>
        <nav>
          {NAV.map(([path, label]) => (
            <a key={path} href={`#${path}`} class={route.path === path || (path === "/runs" && runMatch) ? "on" : ""}>
              {label}
            </a>
          ))}
        </nav>
        <span class="grow" />
        <span
          class={`live${live ? " on" : ""}`}
          data-testid="live"
          title={live ? "live: following the log" : "reconnecting…"}
        >
          {live ? "live" : "offline"}
        </span>
        <span class="ns" title={`token ${session.tokenName}`}>
          namespace <b data-testid="namespace">{session.namespace}</b>
        </span>
        <button type="button" class="small" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <main class="content">{page}</main>
      <div class="toasts">
        {toasts.map((t) => (
          <div key={t.id} class={`toast ${t.kind}`} role="status">
            {t.message}
          </div>
        ))}
      </div>
    </Ctx.Provider>
  );
}

function Logo() {
  return (
    <svg width="20" height="20" viewBox="0 0 20 20" aria-hidden="true" class="logo">
      <path d="M3 10 L9 4 L9 8 L17 8 L11 16 L11 12 L3 12 Z" />
    </svg>
  );
}
