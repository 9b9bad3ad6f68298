/**
 * The command-line client's `check <old> <new>`: in process over real files (output, --json, --policy, every exit
 * code), and once end to end as a child process, for the exit codes the process really ends with.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { RpcCompatibility, RpcGateway } from "effect-actor-rpc"
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ExitCode, VERSION } from "../../src/internal/cli.js"
import { cliMainPath, cliServices, runCli } from "../fixtures/cli.js"

const V1 = RpcGateway.make("G", { m: RpcGateway.ask({ payload: Schema.Struct({ a: Schema.String }) }) })
const required = RpcGateway.make("G", {
  m: RpcGateway.ask({ payload: Schema.Struct({ a: Schema.String, b: Schema.Number }) })
})
const optional = RpcGateway.make("G", {
  m: RpcGateway.ask({ payload: Schema.Struct({ a: Schema.String, b: Schema.optionalKey(Schema.Number) }) })
})
// Old callers are fine (the field is optional on the new side); new callers break old endpoints.
const relaxed = RpcGateway.make("G", { m: RpcGateway.ask({ payload: Schema.Struct({ a: Schema.optionalKey(Schema.String) }) }) })

/** A temporary directory with one snapshot file per gateway, removed when the test's scope closes. */
const files = Effect.gen(function*() {
  const dir = mkdtempSync(join(tmpdir(), "cli-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  const write = (name: string, gateway: RpcGateway.Any) => {
    const path = join(dir, name)
    writeFileSync(path, RpcCompatibility.encodeSnapshot(RpcCompatibility.snapshot(gateway)))
    return path
  }
  const bad = join(dir, "bad.json")
  writeFileSync(bad, "{ nope")
  return {
    v1: write("v1.json", V1),
    required: write("required.json", required),
    optional: write("optional.json", optional),
    relaxed: write("relaxed.json", relaxed),
    bad,
    missing: join(dir, "missing.json")
  }
})

const cli = (...args: Array<string>) => runCli(...args).pipe(Effect.provide(cliServices))

describe("effect-actor-rpc check", () => {
  it.effect("exit 0 and the report for a compatible change", () =>
    Effect.gen(function*() {
      const f = yield* files
      const { code, out } = yield* cli("check", f.v1, f.optional)
      assert.strictEqual(code, ExitCode.Compatible)
      assert.match(out, /^G \(older \w+, newer \w+\): no differences the wire can see\.\n\nG .*: compatible under the both policy/)
    }))

  it.effect("exit 1 and every issue by path for an incompatible one", () =>
    Effect.gen(function*() {
      const f = yield* files
      const { code, out } = yield* cli("check", f.v1, f.required)
      assert.strictEqual(code, ExitCode.Incompatible)
      assert.match(out, /error G\.m\.payload\.b \[RequiredFieldAdded, old caller → new endpoint\]/)
      assert.match(out, /incompatible under the both policy .*: 1 breaking change:$/m)
    }))

  it.effect("--policy chooses the directions that must work", () =>
    Effect.gen(function*() {
      const f = yield* files
      assert.strictEqual((yield* cli("check", f.v1, f.relaxed)).code, ExitCode.Incompatible)
      assert.strictEqual((yield* cli("check", f.v1, f.relaxed, "--policy", "backward")).code, ExitCode.Compatible)
      assert.strictEqual((yield* cli("check", f.v1, f.optional, "--policy", "exact")).code, ExitCode.Incompatible)
      assert.strictEqual((yield* cli("check", f.v1, f.v1, "--policy", "exact")).code, ExitCode.Compatible)
    }))

  it.effect("--json prints the report as JSON", () =>
    Effect.gen(function*() {
      const f = yield* files
      const { code, out } = yield* cli("check", f.v1, f.required, "--json", "--policy", "backward")
      assert.strictEqual(code, ExitCode.Incompatible)
      const parsed = JSON.parse(out)
      assert.strictEqual(parsed.policy, "backward")
      assert.isFalse(parsed.accept)
      assert.deepStrictEqual(parsed.issues.map((i: RpcCompatibility.Issue) => `${i.kind} ${i.path}`), [
        "RequiredFieldAdded G.m.payload.b"
      ])
      assert.strictEqual(parsed.older.fingerprint, V1.fingerprint)
    }))

  it.effect("exit 2 for a file that is not a snapshot or does not exist, with the reason on stderr", () =>
    Effect.gen(function*() {
      const f = yield* files
      const bad = yield* cli("check", f.v1, f.bad)
      assert.strictEqual(bad.code, ExitCode.Usage)
      assert.match(bad.err, /The gateway snapshot from .*bad\.json is not JSON/)
      const missing = yield* cli("check", f.missing, f.v1)
      assert.strictEqual(missing.code, ExitCode.Usage)
      assert.match(missing.err, /Cannot read the snapshot .*missing\.json: /)
      assert.strictEqual(missing.out, "")
    }))

  it.effect("exit 2 for a wrong argument; --help and --version succeed", () =>
    Effect.gen(function*() {
      const f = yield* files
      assert.strictEqual((yield* cli("check", f.v1)).code, ExitCode.Usage)
      assert.strictEqual((yield* cli("check", f.v1, f.v1, "--policy", "nope")).code, ExitCode.Usage)
      const help = yield* cli("check", "--help")
      assert.strictEqual(help.code, 0)
      assert.match(help.out, /effect-actor-rpc check \[flags\] <old> <new>/)
      assert.strictEqual((yield* cli("--version")).out, `effect-actor-rpc v${VERSION}`)
      const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"))
      assert.strictEqual(VERSION, pkg.version)
    }))

  it.live("as a process, it ends with the exit code of its verdict", () =>
    Effect.gen(function*() {
      const f = yield* files
      const [incompatible, missing] = yield* Effect.all([
        spawnCli(["check", f.v1, f.required]),
        spawnCli(["check", f.missing, f.v1])
      ], { concurrency: 2 })
      assert.strictEqual(incompatible.code, ExitCode.Incompatible, incompatible.output)
      assert.match(incompatible.output, /RequiredFieldAdded/)
      assert.strictEqual(missing.code, ExitCode.Usage, missing.output)
      assert.match(missing.output, /Cannot read the snapshot/)
    }), { timeout: 120_000 })
})


/** Runs the client under `process.execPath --import tsx`; killed by its pid if the test ends first. */
const spawnCli = (args: ReadonlyArray<string>) =>
  Effect.callback<{ readonly code: number | null; readonly output: string }>((resume) => {
    const child = execFile(
      process.execPath,
      ["--import", "tsx", cliMainPath, ...args],
      { timeout: 90_000, killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : null
        resume(Effect.succeed({ code, output: `${stdout}${stderr}` }))
      }
    )
    return Effect.sync(() => {
      if (child.pid !== undefined && child.exitCode === null) child.kill("SIGKILL")
    })
  })
