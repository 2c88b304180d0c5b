// The build of pbaffiliate's web app. Each page is an entry (admin/index.html, portal/index.html)
// built into ../pb_public/<page>/, with the code they share in
// ../pb_public/ui/. Output names carry no hash and no timestamp, so a build from the lockfile is
// byte-for-byte the committed one (CI checks it). The CSP allows no inline script or style:
// no module-preload polyfill, CSS in files.
import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";
import { fileURLToPath } from "node:url";

const page = (p) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  plugins: [svelte()],
  build: {
    outDir: "../pb_public",
    emptyOutDir: false, // pb_public holds other files; `make ui` removes the old build first
    assetsDir: "ui",
    modulePreload: { polyfill: false },
    sourcemap: false,
    reportCompressedSize: false,
    license: { fileName: "ui/licenses.md" },
    rollupOptions: {
      input: { admin: page("admin/index.html"), portal: page("portal/index.html") },
      output: {
        entryFileNames: "ui/[name].js",
        // The code both pages share is one chunk; its name would otherwise be one of its modules'.
        // (rolldown also names its runtime chunk, merged away when empty).
        chunkFileNames: (c) => (c.name === "rolldown-runtime" ? "ui/runtime.js" : "ui/shared.js"),
        assetFileNames: (a) => (a.names?.[0]?.endsWith(".css") && !/^(admin|portal)\.css$/.test(a.names[0]) ? "ui/shared.css" : "ui/[name][extname]"),
      },
    },
  },
});
