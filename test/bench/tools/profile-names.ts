/** How the profile summaries (`cpuprofile-top.ts`, `heapprofile-top.ts`) name a script and its package. */
export function shortUrl(url: string): string {
  if (!url) return "(native)";
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) return url.slice(nm + "node_modules/".length);
  const main = url.indexOf("/work/main/");
  if (main >= 0) return url.slice(main + "/work/main/".length);
  return url.replace(/^file:\/\//, "");
}

export function packageOf(url: string): string {
  if (!url) return "(native/gc/idle)";
  if (url.startsWith("node:")) return "node: internals";
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "node_modules/".length).split("/");
    return rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  const m = /\/work\/main\/([^/]+)\//.exec(url);
  return m ? `@taskjet/${m[1]}` : url;
}
