/**
 * README.md's TypeScript snippets, run as written, so that the documentation keeps compiling and telling the truth.
 *
 * Every ```ts block of the README is a complete program, preceded by a comment the rendered page does not show:
 * `<!-- snippet: {"name": "tour", "expect": ["answer: 42"]} -->`. The blocks are written to `.readme-snippets/`
 * (inside the repository, so that `effect-actor-rpc` resolves to this package), type-checked together with the
 * project's compiler settings, and each is run as a user would run it (`npx tsx file.ts`):
 * - `expect`: lines its output must contain; `exit`: its exit code (0 unless given);
 * - `role: "server"`: it runs until it prints an `rpc://` or `rpcs://` address; the next snippet, `role: "client"`,
 *   runs with that address as its argument; then the server gets SIGTERM and must stop (exit 130, as a Node
 *   process interrupted by a signal does under `NodeRuntime.runMain`);
 * Every snippet runs next to `tls/`, which holds a test CA's `ca.crt` and the `server` and `client` key pairs.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { tlsMaterial } from "./fixtures/tls.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const directory = join(root, ".readme-snippets")

interface Snippet {
  readonly name: string
  readonly code: string
  readonly expect: ReadonlyArray<string>
  readonly exit: number
  readonly role: "server" | "client" | undefined
  /** Where it starts in README.md, for messages. */
  readonly line: number
}

/** The README's ```ts blocks, each with its marker; a block without one is an error (every snippet runs). */
const parse = (markdown: string): Array<Snippet> => {
  const lines = markdown.split("\n")
  const snippets: Array<Snippet> = []
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== "```ts") continue
    const end = lines.indexOf("```", i + 1)
    if (end < 0) throw new Error(`README.md:${i + 1}: a \`\`\`ts block that never closes`)
    let marker = i - 1
    while (marker >= 0 && lines[marker]!.trim() === "") marker--
    const found = /^<!-- snippet: (\{.*\}) -->$/.exec(lines[marker]?.trim() ?? "")
    if (found === null) throw new Error(`README.md:${i + 1}: a \`\`\`ts block without a <!-- snippet: {...} --> marker`)
    const meta = JSON.parse(found[1]!) as {
      name: string
      expect?: Array<string>
      exit?: number
      role?: "server" | "client"
    }
    snippets.push({
      name: meta.name,
      code: lines.slice(i + 1, end).join("\n") + "\n",
      expect: meta.expect ?? [],
      exit: meta.exit ?? 0,
      role: meta.role,
      line: i + 1
    })
    i = end
  }
  return snippets
}

const snippets = parse(readFileSync(join(root, "README.md"), "utf8"))

const fileOf = (snippet: Snippet) => join(directory, `${snippet.name}.ts`)

/** Writes the snippets, the TLS material and a tsconfig that checks them with the project's settings. */
const prepare = () => {
  rmSync(directory, { recursive: true, force: true })
  mkdirSync(join(directory, "tls"), { recursive: true })
  for (const snippet of snippets) writeFileSync(fileOf(snippet), snippet.code)
  const material = tlsMaterial()
  writeFileSync(join(directory, "tls", "ca.crt"), material.ca.cert)
  for (const side of ["server", "client"] as const) {
    writeFileSync(join(directory, "tls", `${side}.key`), material[side].key)
    writeFileSync(join(directory, "tls", `${side}.crt`), material[side].cert)
  }
  writeFileSync(
    join(directory, "tsconfig.json"),
    JSON.stringify({ extends: "../tsconfig.json", compilerOptions: { noEmit: true }, include: ["*.ts"] })
  )
}

prepare()

/** How a user runs a snippet, with this repository's sources in place of the published build. */
const command = (file: string, args: ReadonlyArray<string>) => ({
  file: process.execPath,
  args: ["--conditions=effect-actor-rpc-source", "--import", "tsx", file, ...args]
})

interface Run {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly output: string
}

/** Runs a snippet to its end (killed after `withinMs`). */
const run = (snippet: Snippet, args: ReadonlyArray<string> = [], withinMs = 30_000) =>
  Effect.callback<Run>((resume) => {
    const { args: argv, file } = command(fileOf(snippet), args)
    const child = spawn(file, argv, { cwd: directory, stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    child.stdout.on("data", (chunk) => (output += chunk))
    child.stderr.on("data", (chunk) => (output += chunk))
    const timer = setTimeout(() => child.kill("SIGKILL"), withinMs)
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      resume(Effect.succeed({ code, signal, output }))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** Starts a server snippet; ends it (SIGTERM, then SIGKILL) with the scope. */
const start = (snippet: Snippet) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const { args, file } = command(fileOf(snippet), [])
      const child = spawn(file, args, { cwd: directory, stdio: ["ignore", "pipe", "pipe"] })
      const state = { output: "", exit: undefined as Run | undefined }
      const exited = new Promise<Run>((resolve) =>
        child.once("exit", (code, signal) => {
          state.exit = { code, signal, output: state.output }
          resolve(state.exit)
        })
      )
      child.stdout!.on("data", (chunk) => (state.output += chunk))
      child.stderr!.on("data", (chunk) => (state.output += chunk))
      return { child, state, exited }
    }),
    ({ child }) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
  )

/** Stops a server with SIGTERM and waits (at most 10 s) for its exit. */
const stop = (server: { readonly child: ChildProcess; readonly exited: Promise<Run> }) =>
  Effect.promise(() => {
    server.child.kill("SIGTERM")
    const timer = setTimeout(() => server.child.kill("SIGKILL"), 10_000)
    return server.exited.finally(() => clearTimeout(timer))
  })

const checkOutput = (snippet: Snippet, result: Run) => {
  for (const expected of snippet.expect) {
    assert.include(result.output, expected, `README.md:${snippet.line} (${snippet.name}) should print "${expected}"`)
  }
}

describe("README", () => {
  it("every TypeScript snippet is marked, named once and type-checks as a program of its own", () => {
    assert.isAbove(snippets.length, 5)
    const names = snippets.map((snippet) => snippet.name)
    assert.deepStrictEqual([...new Set(names)], names, "snippet names are unique")
    const tsc = spawnSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", directory], {
      cwd: root,
      encoding: "utf8",
      timeout: 120_000
    })
    assert.strictEqual(tsc.status, 0, `tsc on the README's snippets:\n${tsc.stdout}${tsc.stderr}`)
  }, 150_000)

  describe.concurrent("runs each snippet as written", () => {
    for (const [index, snippet] of snippets.entries()) {
      if (snippet.role === "client") continue
      if (snippet.role === "server") {
        const client = snippets[index + 1]
        it.live(`${snippet.name} serves, ${client?.name} calls it by address, SIGTERM stops it (README.md:${snippet.line})`, () =>
          Effect.gen(function*() {
            assert.strictEqual(client?.role, "client", `README.md:${snippet.line}: a server snippet is followed by its client`)
            const server = yield* start(snippet)
            let address: string | undefined
            for (let i = 0; i < 300 && address === undefined && server.state.exit === undefined; i++) {
              address = /rpcs?:\/\/\S+/.exec(server.state.output)?.[0]?.replace(/['",]+$/, "")
              if (address === undefined) yield* Effect.sleep("100 millis")
            }
            assert.isDefined(address, `the server printed no address:\n${server.state.output}`)
            const called = yield* run(client!, [address!])
            assert.strictEqual(called.code, client!.exit, `${client!.name} exited ${called.code}:\n${called.output}`)
            checkOutput(client!, called)
            const stopped = yield* stop(server)
            assert.strictEqual(stopped.code, snippet.exit === 0 ? 130 : snippet.exit, `the server's exit:\n${stopped.output}`)
            checkOutput(snippet, stopped)
          }).pipe(Effect.scoped), 60_000)
        continue
      }
      it.live(`${snippet.name} (README.md:${snippet.line})`, () =>
        Effect.gen(function*() {
          const result = yield* run(snippet)
          assert.strictEqual(result.code, snippet.exit, `${snippet.name} exited ${result.code}:\n${result.output}`)
          checkOutput(snippet, result)
        }), 60_000)
    }
  })
})
