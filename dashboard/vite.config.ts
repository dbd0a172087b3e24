import { defineConfig } from "vite";

/**
 * Static assets for the engine to serve at `/dashboard/`: relative URLs (`base: "./"`), hashed names under `assets/`,
 * Preact's JSX compiled by Vite's own transformer (no plugin). `npm run dev -w @taskjet/dashboard` (vite dev) proxies
 * `/api` to an engine at TASKJET_ENGINE_URL (default http://127.0.0.1:8080).
 */
export default defineConfig({
  base: "./",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", sourcemap: false, reportCompressedSize: true },
  server: {
    proxy: { "/api": { target: process.env.TASKJET_ENGINE_URL ?? "http://127.0.0.1:8080", changeOrigin: false } },
  },
});
