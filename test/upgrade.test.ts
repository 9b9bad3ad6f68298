/**
 * A rolling upgrade: v1 and v2 of a gateway in two processes, for every change of docs/PROTOCOL.md's table. This
 * process serves v1 of each change (test/fixtures/upgradeGateways.ts) and a child process serves v2
 * (test/fixtures/upgradePeer.ts). Each change is called both ways: v1 here calls v2 there, and the child, told by
 * its prober, calls v1 here with v2. Compatible changes work both ways (a method only v2 has fails alone, with
 * MethodNotServedError); a reader that widened works one way; every incompatible change is refused at connect
 * with its path. Both processes run the default policy, backward.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { RpcService } from "effect-actor-rpc"
import { fileURLToPath } from "node:url"
import { startOn } from "./behaviour.js"
import { spawnScript } from "./fixtures/peerProcess.js"
import { changes, endpointOf, type Outcome, probe, PROBER_ID, Prober } from "./fixtures/upgradeGateways.js"

const peerScript = fileURLToPath(new URL("./fixtures/upgradePeer.ts", import.meta.url))

/** What each direction must give, by change: the calls' lines, or the refusal's path. */
const expected: Record<string, { readonly v1ToV2: Expectation; readonly v2ToV1: Expectation }> = {
  "optional-field": {
    v1ToV2: calls(`echo({"a":"x"}) -> "v2 echo read {\\"a\\":\\"x\\"}"`),
    v2ToV1: calls(`echo({"a":"y","b":2}) -> "v1 echo read {\\"a\\":\\"y\\"}"`)
  },
  "field-id-rename": {
    v1ToV2: calls(`echo({"name":"ada"}) -> "v2 echo read {\\"title\\":\\"ada\\"}"`),
    v2ToV1: calls(`echo({"title":"bob"}) -> "v1 echo read {\\"name\\":\\"bob\\"}"`)
  },
  "reorder": {
    v1ToV2: calls(`echo({"a":"p","n":1}) -> "v2 echo read {\\"a\\":\\"p\\",\\"n\\":1}"`),
    v2ToV1: calls(`echo({"n":2,"a":"q"}) -> "v1 echo read {\\"a\\":\\"q\\",\\"n\\":2}"`)
  },
  "timeout": {
    v1ToV2: calls(`echo("t1") -> "v2 echo read \\"t1\\""`),
    v2ToV1: calls(`echo("t2") -> "v1 echo read \\"t2\\""`)
  },
  "add-method": {
    v1ToV2: calls(`echo("m1") -> "v2 echo read \\"m1\\""`),
    // The old endpoint answers "not served" for that method alone; the rest keeps working.
    v2ToV1: calls(`echo("m2") -> "v1 echo read \\"m2\\""`, `extra() failed MethodNotServedError (AddMethod.extra)`)
  },
  "widen-literal": {
    v1ToV2: calls(`echo("a") -> "v2 echo read \\"a\\""`),
    v2ToV1: refused("WidenLiteral.echo.payload", "LiteralRemoved")
  },
  "rename-method": {
    v1ToV2: refused("RenameMethod.echo", "MethodRemoved"),
    v2ToV1: refused("RenameMethod.repeat", "MethodRemoved")
  },
  "kind-change": {
    v1ToV2: refused("KindChange.echo", "KindChanged"),
    v2ToV1: refused("KindChange.echo", "KindChanged")
  },
  "token-change": {
    v1ToV2: refused("TokenChange.token", "TokenChanged"),
    v2ToV1: refused("TokenChange.token", "TokenChanged")
  },
  "required-field": {
    v1ToV2: refused("RequiredField.echo.payload.b", "RequiredFieldAdded"),
    // The newer caller writes b; the older endpoint skips it.
    v2ToV1: calls(`echo({"a":"y","b":3}) -> "v1 echo read {\\"a\\":\\"y\\"}"`)
  },
  "type-change": {
    v1ToV2: refused("TypeChange.echo.payload.a", "TypeChanged"),
    v2ToV1: refused("TypeChange.echo.payload.a", "TypeChanged")
  },
  "drop-member": {
    v1ToV2: refused("DropMember.echo.payload<Dog>", "UnionMemberMissing"),
    v2ToV1: calls(`echo({"_tag":"Cat","name":"tom"}) -> "v1 echo read {\\"name\\":\\"tom\\",\\"_tag\\":\\"Cat\\"}"`)
  },
  // A removal alone looks, at connect, like an addition on the other side: accepted, and the removed method alone
  // fails. RpcCompatibility.check(v1, v2) in CI, which knows the order, reports it as an error.
  "remove-method": {
    v1ToV2: calls(`echo("o1") -> "v2 echo read \\"o1\\""`, `old() failed MethodNotServedError (RemoveMethod.old)`),
    v2ToV1: calls(`echo("o2") -> "v1 echo read \\"o2\\""`)
  }
}

type Expectation =
  | { readonly _tag: "calls"; readonly lines: ReadonlyArray<string> }
  | { readonly _tag: "refused"; readonly path: string; readonly kind: string }

function calls(...lines: ReadonlyArray<string>): Expectation {
  return { _tag: "calls", lines }
}

function refused(path: string, kind: string): Expectation {
  return { _tag: "refused", path, kind }
}

const verify = (change: string, direction: string, outcome: Outcome, expectation: Expectation) => {
  const where = `${change}, ${direction}`
  if (expectation._tag === "calls") {
    assert.isTrue(outcome.connected, `${where}: connect refused: ${outcome.reason} ${outcome.detail}`)
    assert.deepStrictEqual(outcome.results, expectation.lines, where)
    return
  }
  assert.isFalse(outcome.connected, `${where}: connected, calls gave ${outcome.results.join("; ")}`)
  assert.strictEqual(outcome.reason, "GatewayMismatch", where)
  const path = expectation.path.replace(/[.<>[\]]/g, (c) => `\\${c}`)
  assert.match(outcome.detail!, new RegExp(`error ${path} \\[${expectation.kind}, `), where)
}

describe("a rolling upgrade, v1 and v2 in two processes", () => {
  it.live("every change, called both ways", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(Object.keys(expected).sort(), changes.map((c) => c.name).sort(), "every change is expected")
      const service = yield* RpcService.makeTcp({ host: "127.0.0.1", port: 0 })
      const local = new Map<string, string>()
      for (const change of changes) local.set(change.name, (yield* startOn(service, endpointOf(change, "v1"))).address)
      const child = yield* spawnScript(peerScript, ["v2"])
      const base = child.address.slice(0, -PROBER_ID.length)
      const prober = yield* service.connect(child.address, Prober)
      const outcomes = yield* Effect.forEach(changes, (change) =>
        Effect.all({
          v1ToV2: probe(service, change, "v1", `${base}${change.name}`),
          v2ToV1: prober.probe({ change: change.name, address: local.get(change.name)! })
        }), { concurrency: 4 })
      changes.forEach((change, i) => {
        verify(change.name, "v1 → v2", outcomes[i]!.v1ToV2, expected[change.name]!.v1ToV2)
        verify(change.name, "v2 → v1", outcomes[i]!.v2ToV1, expected[change.name]!.v2ToV1)
      })
    }).pipe(Effect.scoped), { timeout: 120_000 })
})
