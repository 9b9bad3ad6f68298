/**
 * The entry point of the command-line client: `npx tsx src/internal/cliMain.ts check old.json new.json`. The
 * package's `bin` will point at it once the client has its socket commands (issue 16, phase 2).
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import * as Effect from "effect/Effect"
import { run } from "./cli.js"

run(process.argv.slice(2)).pipe(Effect.provide(NodeServices.layer), NodeRuntime.runMain)
