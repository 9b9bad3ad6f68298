import { defineConfig } from "vitest/config"

/**
 * The tests run on the sources: under this condition the package's own name (`effect-actor-rpc`) resolves to
 * `src/*.ts` (package.json `exports`), without it to `dist/`, as for users. A list given here replaces Vite's default
 * server conditions, so those follow it; Vitest also hands the list to its workers as Node `--conditions`.
 */
const conditions = ["effect-actor-rpc-source", "module", "node", "development|production"]

export default defineConfig({
  ssr: { resolve: { conditions } },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
