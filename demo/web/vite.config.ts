import { defineConfig } from "vite";

// No React plugin: esbuild compiles the JSX. `dedupe` keeps one copy of React and TanStack Query,
// since @syncgate/client is linked from ../../clients/js, which has its own node_modules.
export default defineConfig({
  esbuild: { jsx: "automatic" },
  resolve: { dedupe: ["react", "react-dom", "@tanstack/react-query"] },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    rollupOptions: {
      // TanStack Query marks its hooks "use client" for React Server Components; meaningless here.
      onwarn(warning, warn) {
        if (warning.code !== "MODULE_LEVEL_DIRECTIVE") warn(warning);
      },
    },
  },
});
