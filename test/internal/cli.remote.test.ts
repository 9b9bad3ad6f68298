/**
 * The command-line client's socket commands, end to end against a service in a child process
 * (test/fixtures/cliServer.ts: TCP and mutual TLS, reflection on): ping, list, describe (whose --json check reads),
 * call (success, declared failure, library errors, a fenced endpoint, bad input), every exit code, and once as a
 * process of its own, for what stdout and the exit code really are.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, Schema } from "effect"
import { RpcCompatibility, RpcGateway, RpcService } from "effect-actor-rpc"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { ExitCode } from "../../src/internal/cli.js"
import { cliMainPath, cliServices, runCli } from "../fixtures/cli.js"
import { startOn } from "../behaviour.js"
import { Missing, Store } from "../fixtures/cliServer.js"
import { testEndpoint } from "../fixtures/common.js"
import { spawnScript } from "../fixtures/peerProcess.js"
import { tlsMaterial } from "../fixtures/tls.js"

const serverScript = fileURLToPath(new URL("../fixtures/cliServer.ts", import.meta.url))

const cli = runCli
const withConsole = Effect.provide(cliServices)

/** The child's two services (addresses without an endpoint id), and the client's TLS flags. */
class CliServer extends Context.Service<CliServer, {
  readonly tcp: string
  readonly tls: string
  readonly tlsFlags: ReadonlyArray<string>
}>()("test/CliServer") {}

/** The child process, started once for the tests that share it and killed when they are done. */
const CliServerLive = Layer.effect(CliServer)(Effect.gen(function*() {
  const material = tlsMaterial()
  const { address } = yield* spawnScript(serverScript, [], {
    RPC_TLS_KEY: material.server.keyPath,
    RPC_TLS_CERT: material.server.certPath,
    RPC_TLS_CA: material.ca.certPath
  })
  const [tcp, tls] = address.split(",") as [string, string]
  const tlsFlags = ["--key", material.client.keyPath, "--cert", material.client.certPath, "--ca", material.ca.certPath]
  return { tcp, tls, tlsFlags }
}))

const shared = layer(CliServerLive, { excludeTestServices: true, timeout: "60 seconds" })

shared("effect-actor-rpc against a running service", (it) => {
  it.effect("ping, list, describe and call, with the exit code of each outcome", () =>
    Effect.gen(function*() {
      const { tcp, tls, tlsFlags } = yield* CliServer

      // ping: the service, its incarnation, the protocol version, round trips.
      const ping = yield* cli("ping", tcp, "--count", "2")
      assert.strictEqual(ping.code, ExitCode.Ok, ping.err)
      assert.match(ping.out, /: RpcService rpc-\d+, incarnation [0-9a-f-]{36}, protocol version 4/)
      assert.match(ping.out, /handshake 2: [\d.]+ ms\nround trip min\/avg\/max/)
      const pingJson = JSON.parse((yield* cli("ping", `${tcp}/store`, "--count", "1", "--json")).out)
      assert.deepStrictEqual(pingJson.endpoint, { endpointId: "store", present: true })
      assert.strictEqual(pingJson.roundTripMillis.length, 1)
      assert.strictEqual((yield* cli("ping", `${tcp}/nobody`, "--count", "0")).code, ExitCode.NotFound)

      // list: both endpoints with their gateways.
      const list = yield* cli("list", tcp)
      assert.strictEqual(list.code, ExitCode.Ok, list.err)
      assert.match(list.out, /\/leader {2}started, fenced\n {2}Leader {2}\w{16} {2}token declared\n {4}status \(ask\)/)
      assert.match(list.out, /Store {2}\w{16}\n {4}add \(ask\), get \(ask\), note \(tell\), notes \(ask\), put \(ask\), slow/)
      assert.match(list.out, /\n {2}Health {2}\w{16}\n {4}get \(ask\)/)
      const listed = JSON.parse((yield* cli("list", tcp, "--json")).out)
      assert.deepStrictEqual(listed.endpoints.map((e: { endpointId: string }) => e.endpointId), ["leader", "store"])

      // describe: readable types, and the wire form where a transformation makes it differ.
      const described = yield* cli("describe", `${tcp}/store`)
      assert.strictEqual(described.code, ExitCode.Ok, described.err)
      assert.match(described.out, /gateway Store \(fingerprint \w{16}\)/)
      assert.match(described.out, / {2}get: ask\n {4}payload: string\n {4}success: string\n {4}failure: Missing/)
      assert.match(described.out, / {4}payload: \{ n: number \}\n {6}on the wire \(as call takes it in JSON\): \{ n: string \}/)

      // call: an ask, the reply as JSON; a declared failure, exit 1; a tell.
      assert.strictEqual((yield* cli("call", `${tcp}/store`, "put", `{"key":"k","value":"v"}`)).code, ExitCode.Ok)
      assert.strictEqual((yield* cli("call", `${tcp}/store`, "Store.get", `"k"`)).out, `"v"`)
      const failed = yield* cli("call", `${tcp}/store`, "get", `"nope"`, "--gateway", "Store")
      assert.strictEqual(failed.code, ExitCode.Failure)
      assert.deepStrictEqual(JSON.parse(failed.out), { _tag: "Missing", key: "nope" })
      assert.strictEqual((yield* cli("call", `${tcp}/store`, "add", `{"n":"40"}`)).out, "40")
      assert.strictEqual((yield* cli("call", `${tcp}/store`, "note", `"hello"`)).out, "sent (a tell has no reply)")
      assert.deepStrictEqual(JSON.parse((yield* cli("call", `${tcp}/store`, "notes", "--json")).out), {
        outcome: "success",
        value: ["hello"]
      })

      // A fenced endpoint: its token as JSON; a wrong one is the library's error, exit 5.
      assert.strictEqual((yield* cli("call", `${tcp}/leader`, "status", "--token", "3")).out, `"leading"`)
      const stale = yield* cli("call", `${tcp}/leader`, "status", "--token", "2")
      assert.strictEqual(stale.code, ExitCode.CallError)
      assert.match(stale.err, /Fencing token mismatch/)
      // A timeout is the library's error too.
      const slow = yield* cli("call", `${tcp}/store`, "slow", "--timeout", "200ms")
      assert.strictEqual(slow.code, ExitCode.CallError)
      assert.match(slow.err, /timed out after 200 ms/)

      // What cannot run as given: exit 2, with why.
      const notJson = yield* cli("call", `${tcp}/store`, "Store.get", "{nope")
      assert.strictEqual(notJson.code, ExitCode.Usage)
      assert.match(notJson.err, /The payload is not JSON/)
      const wrongType = yield* cli("call", `${tcp}/store`, "put", `{"key":1}`)
      assert.strictEqual(wrongType.code, ExitCode.Usage)
      assert.match(wrongType.err, /does not match its Schema \(\{ key: string; value: string \}\)/)
      assert.strictEqual((yield* cli("call", `${tcp}/store`, "Store.get")).code, ExitCode.Usage)
      // A method two gateways of the endpoint have: the command says which, and asks to choose.
      const ambiguous = yield* cli("call", `${tcp}/store`, "get", `"k"`)
      assert.strictEqual(ambiguous.code, ExitCode.Usage)
      assert.match(ambiguous.err, /get is a method of Store and Health: name one \(Gateway\.method or --gateway\)/)
      assert.strictEqual((yield* cli("call", `${tcp}/store`, "Health.get", `"k"`)).out, `"v"`)
      assert.strictEqual((yield* cli("ping", "http://example.com")).code, ExitCode.Usage)
      assert.strictEqual((yield* cli("ping", tcp, "--timeout", "soon")).code, ExitCode.Usage)
      // Nothing there: exit 4.
      const unknownMethod = yield* cli("call", `${tcp}/store`, "nope")
      assert.strictEqual(unknownMethod.code, ExitCode.NotFound)
      assert.match(unknownMethod.err, /no method nope; it serves Store\.add, Store\.get/)
      assert.strictEqual((yield* cli("describe", `${tcp}/nobody`)).code, ExitCode.NotFound)

      // Over mutual TLS with the client's own certificate; without one, the command cannot run.
      assert.strictEqual((yield* cli("call", `${tls}/store`, "Store.get", `"nope"`, ...tlsFlags)).code, ExitCode.Failure)
      assert.strictEqual((yield* cli("ping", tls, ...tlsFlags)).code, ExitCode.Ok)
      const noCert = yield* cli("ping", tls)
      assert.strictEqual(noCert.code, ExitCode.Usage)
      assert.match(noCert.err, /needs --key, --cert and --ca/)
    }).pipe(withConsole), { timeout: 120_000 })

  it.effect("describe --json writes the snapshot that check reads", () =>
    Effect.gen(function*() {
      const { tcp } = yield* CliServer
      const dir = mkdtempSync(join(tmpdir(), "cli-remote-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      // The store serves two gateways: --json writes one snapshot, so one must be chosen.
      const both = yield* cli("describe", `${tcp}/store`, "--json")
      assert.strictEqual(both.code, ExitCode.Usage)
      assert.match(both.err, /The endpoint serves Store, Health: choose one with --gateway/)
      const described = yield* cli("describe", `${tcp}/store`, "--json", "--gateway", "Store")
      assert.strictEqual(described.code, ExitCode.Ok, described.err)
      assert.strictEqual(`${described.out}\n`, RpcCompatibility.encodeSnapshot(RpcCompatibility.snapshot(Store)))
      const running = join(dir, "running.json")
      writeFileSync(running, described.out)
      // The next version changes get's payload.
      const Next = RpcGateway.make("Store", {
        ...Store.methods,
        get: RpcGateway.ask({ payload: Schema.Number, success: Schema.String, failure: Missing })
      })
      const next = join(dir, "next.json")
      writeFileSync(next, RpcCompatibility.encodeSnapshot(RpcCompatibility.snapshot(Next)))
      assert.strictEqual((yield* cli("check", running, running)).code, ExitCode.Compatible)
      const check = yield* cli("check", running, next)
      assert.strictEqual(check.code, ExitCode.Incompatible)
      assert.match(check.out, /error Store\.get\.payload \[TypeChanged/)
      // One gateway: no choice needed.
      const leader = yield* cli("describe", `${tcp}/leader`, "--json")
      assert.strictEqual(leader.code, ExitCode.Ok, leader.err)
      assert.strictEqual(JSON.parse(leader.out).gateway, "Leader")
      assert.strictEqual((yield* cli("describe", `${tcp}/store`, "--gateway", "Nope")).code, ExitCode.NotFound)
    }).pipe(withConsole), { timeout: 120_000 })

  it.effect("as a process: stdout is the JSON alone (logs go to stderr) and the exit code is the outcome's", () =>
    Effect.gen(function*() {
      const { tcp } = yield* CliServer
      const result = yield* Effect.callback<{ readonly code: number | null; readonly stdout: string }>((resume) => {
        const child = execFile(
          process.execPath,
          ["--import", "tsx", cliMainPath, "call", `${tcp}/store`, "Store.get", `"absent"`, "--json"],
          { timeout: 90_000, killSignal: "SIGKILL" },
          (error, stdout) => {
            const code = error === null ? 0 : typeof error.code === "number" ? error.code : null
            resume(Effect.succeed({ code, stdout }))
          }
        )
        return Effect.sync(() => {
          if (child.pid !== undefined && child.exitCode === null) child.kill("SIGKILL")
        })
      })
      assert.strictEqual(result.code, ExitCode.Failure)
      assert.deepStrictEqual(JSON.parse(result.stdout), {
        outcome: "failure",
        failure: { _tag: "Missing", key: "absent" }
      })
    }), { timeout: 120_000 })
})

describe("effect-actor-rpc against other services", () => {
  it.live("a service with reflection off: list says so, exit 4; an unreachable one: exit 3", () =>
    Effect.gen(function*() {
      const closed = yield* RpcService.makeTcp({ host: "127.0.0.1", port: 0 })
      const endpoint = yield* startOn(closed, testEndpoint())
      const service = endpoint.address.slice(0, endpoint.address.lastIndexOf("/"))
      const list = yield* cli("list", service)
      assert.strictEqual(list.code, ExitCode.NotFound)
      assert.match(list.err, /does not answer reflection: RpcConfig\.reflection is off there/)
      // ping needs no reflection.
      assert.strictEqual((yield* cli("ping", endpoint.address, "--count", "0")).code, ExitCode.Ok)
      const port = Number(/:(\d+)$/.exec(service)![1])
      yield* closed.shutdown
      const gone = yield* cli("ping", `rpc://127.0.0.1:${port}`, "--timeout", "2s")
      assert.strictEqual(gone.code, ExitCode.Unreachable)
      assert.match(gone.err, /Cannot reach rpc:\/\/127\.0\.0\.1:\d+ \(Refused\)/)
    }).pipe(Effect.scoped, withConsole), { timeout: 60_000 })
})
