#!/usr/bin/env node
/**
 * The entry point of the command-line client, the package's `bin` (`npx effect-actor-rpc ping rpc://...`); in this
 * repository, from the sources, `npm run -s cli -- ping rpc://...`. Logs go to stderr, so that stdout carries only
 * what a command prints (JSON for scripts with --json).
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import { run } from "./cli.js"

run(process.argv.slice(2)).pipe(
  Effect.provideService(Logger.LogToStderr, true),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
