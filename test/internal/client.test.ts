/**
 * The client over a port: when the endpoint finds an ask's deadline passed before this side's timer fires, its
 * answer (an RpcTimeoutError without a call site) becomes the call's own timeout, which names the caller's line.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Schema } from "effect"
import { RpcConfig, RpcError, RpcGateway } from "effect-actor-rpc"
import * as Client from "../../src/internal/client.js"
import { Deadlines } from "../../src/internal/deadlines.js"
import { NoToken } from "../../src/internal/invocation.js"
import { Instruments } from "../../src/internal/metrics.js"

const Gateway = RpcGateway.make("Slow", { work: RpcGateway.ask({ success: Schema.Number }) })

/** A client whose port answers every ask at once with `answer`. */
const clientAnswering = (answer: Exit.Exit<unknown, unknown>) =>
  Effect.gen(function*() {
    const deadlines = new Deadlines(yield* Effect.context<never>(), yield* Effect.scope)
    const origin: Client.Origin = {
      name: "test",
      config: RpcConfig.defaults,
      isStopped: () => false,
      deadlines,
      instruments: new Instruments(Context.empty(), false),
      inFlight: 0
    }
    const port: Client.Port = {
      address: "local://test/slow",
      ask: (_gateway, _method, _payload, _token, _timeout, _now, _span, resume) => {
        resume(answer)
        return undefined
      },
      tell: () => undefined
    }
    return Client.make(Gateway, port, origin, () => NoToken)
  })

describe("client", () => {
  it.effect("an endpoint's timeout answer becomes the call's own RpcTimeoutError, with the caller's call site", () =>
    Effect.gen(function*() {
      const endpointAnswer = new RpcError.RpcTimeoutError({ address: "local://test/slow", method: "Slow.work", timeoutMillis: 100 })
      const client = yield* clientAnswering(Exit.fail(endpointAnswer))
      const error = yield* Effect.flip(client.work(undefined, { timeout: "100 millis" }))
      assert.instanceOf(error, RpcError.RpcTimeoutError)
      assert.match((error as RpcError.RpcTimeoutError).callSite ?? "", /client\.test\.ts:\d+/)
    }).pipe(Effect.scoped))

  it.effect("other failures reach the caller as they are", () =>
    Effect.gen(function*() {
      const unreachable = new RpcError.RecipientUnreachableError({ address: "a", method: "Slow.work", reason: "gone" })
      const client = yield* clientAnswering(Exit.fail(unreachable))
      assert.strictEqual(yield* Effect.flip(client.work()), unreachable)
    }).pipe(Effect.scoped))
})
