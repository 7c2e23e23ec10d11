// Library build: one self-contained file, dist/widget.js, that defines <lorechat-widget> when loaded.
import { defineConfig } from "vitest/config";

export default defineConfig({
  build: {
    lib: {
      entry: "src/index.ts",
      name: "LorechatWidget",
      formats: ["iife"],
      fileName: () => "widget.js",
    },
    target: "es2020",
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    minify: true,
  },
  test: {
    environment: "happy-dom",
    include: ["test/**/*.test.ts"],
  },
});
