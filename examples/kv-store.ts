/**
 * Key-value store: a gateway with two asks (one with a typed failure) and a tell.
 *
 * - `getData` fails with `KeyNotFound`, declared as the method's failure Schema, so callers see it in the
 *   error channel with its type and fields intact and can recover with `Effect.catchTag`.
 * - `putData` is a request/response: the caller waits until the value is stored.
 * - `notifyEvent` is fire-and-forget: the caller does not wait, and hears nothing back.
 *
 * Run: npm run example:kv-store   (or: npx tsx examples/kv-store.ts)
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer, Schema } from "effect"
import { RpcEndpoint, RpcGateway, RpcService } from "effect-actor-rpc"

// The typed failure of getData.
class KeyNotFound extends Schema.TaggedError<KeyNotFound>()("KeyNotFound", {
  key: Schema.String
}) {
  override get message(): string {
    return `no value stored under "${this.key}"`
  }
}

// The protocol.
const KvGateway = RpcGateway.make("KvGateway", {
  getData: RpcGateway.ask({ payload: Schema.String, success: Schema.String, failure: KeyNotFound }),
  putData: RpcGateway.ask({ payload: Schema.Struct({ key: Schema.String, value: Schema.String }) }),
  notifyEvent: RpcGateway.tell({ payload: Schema.String })
})

// The endpoint: a Map that only its main thread touches.
const KvEndpoint = RpcEndpoint.make({
  id: "kv",
  gateways: [KvGateway],
  init: () =>
    Effect.sync(() => {
      const data = new Map<string, string>()
      return {
        handlers: {
          getData: (key) => {
            const value = data.get(key)
            return value === undefined ? Effect.fail(new KeyNotFound({ key })) : Effect.succeed(value)
          },
          putData: ({ key, value }) =>
            Effect.sync(() => data.set(key, value)).pipe(Effect.andThen(Console.log(`[kv] stored ${key} = ${value}`))),
          notifyEvent: (event) => Console.log(`[kv] event: ${event}`)
        },
        onStop: Effect.suspend(() => Console.log(`[kv] stopping; ${data.size} key(s) stored`))
      }
    })
})

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  const kv = yield* service.connect(`local://${service.name}/kv`, KvGateway)

  yield* kv.putData({ key: "answer", value: "42" })
  yield* Console.log(`[client] getData("answer") = ${yield* kv.getData("answer")}`)

  // A tell returns as soon as the message is enqueued; the endpoint handles it in order with the rest.
  yield* kv.notifyEvent("client connected")

  // The failure is typed: Effect<string, KeyNotFound | RpcCallError>. Recover from KeyNotFound only.
  const missing = yield* kv.getData("question").pipe(
    Effect.catchTag("KeyNotFound", (error) =>
      Console.log(`[client] caught ${error._tag}: ${error.message}`).pipe(Effect.as("<default>")))
  )
  yield* Console.log(`[client] getData("question") with a fallback = ${missing}`)
})

const MainLayer = RpcEndpoint.layer(KvEndpoint).pipe(Layer.provideMerge(RpcService.layerLocal({ name: "kv-service" })))

program.pipe(Effect.provide(MainLayer), NodeRuntime.runMain)
