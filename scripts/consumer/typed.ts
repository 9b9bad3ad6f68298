/**
 * The consumer test's TypeScript consumer: type-checked against the installed tarball's declarations under strict
 * user settings (strict, noUnusedParameters, noUnusedLocals, erasableSyntaxOnly, exactOptionalPropertyTypes,
 * skipLibCheck false), with `nodenext` and with `bundler` resolution; the `nodenext` build is then run by plain
 * `node`. Every public entry point is imported by its subpath; internals must not resolve.
 */
import { Duration, Effect, Layer, Schema } from "effect"
import { RpcConfig, RpcEndpoint, RpcError, RpcGateway, RpcService } from "effect-actor-rpc"
import * as RpcAddress from "effect-actor-rpc/RpcAddress"
import * as RpcConfigModule from "effect-actor-rpc/RpcConfig"
import * as RpcEndpointModule from "effect-actor-rpc/RpcEndpoint"
import * as RpcErrorModule from "effect-actor-rpc/RpcError"
import * as RpcGatewayModule from "effect-actor-rpc/RpcGateway"
import * as RpcMetrics from "effect-actor-rpc/RpcMetrics"
import type { RpcServer } from "effect-actor-rpc/RpcServer"
import * as RpcServiceModule from "effect-actor-rpc/RpcService"
// @ts-expect-error internals are not exported
import type * as Internal from "effect-actor-rpc/internal/client"

/** True when A and B are the same type. */
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
const same = <A, B>(_proof: Equals<A, B>): void => {}

class KeyNotFound extends Schema.TaggedError<KeyNotFound>()("KeyNotFound", { key: Schema.String }) {}

const KvGateway = RpcGateway.make("KvGateway", {
  get: RpcGateway.ask({ payload: Schema.String, success: Schema.String, failure: KeyNotFound }),
  put: RpcGateway.tell({ payload: Schema.Struct({ key: Schema.String, value: Schema.String }) }),
  size: RpcGateway.ask({ success: Schema.Number, timeout: "1 second" })
})

const KvEndpoint = RpcEndpoint.make({
  id: "kv",
  gateways: [KvGateway],
  init: () =>
    Effect.sync(() => {
      const data = new Map<string, string>()
      return {
        handlers: {
          get: (key) => {
            const value = data.get(key)
            return value === undefined ? Effect.fail(new KeyNotFound({ key })) : Effect.succeed(value)
          },
          put: ({ key, value }) => Effect.sync(() => void data.set(key, value)),
          size: () => Effect.sync(() => data.size)
        }
      }
    })
})

type Kv = RpcGateway.Client<typeof KvGateway>
const addressOf = (server: RpcServer<ReadonlyArray<RpcGateway.Any>, unknown, unknown>): string => server.address
same<Effect.Error<ReturnType<Kv["get"]>>, KeyNotFound | RpcError.RpcCallError>(true)
same<Effect.Success<ReturnType<Kv["get"]>>, string>(true)
same<Effect.Error<ReturnType<Kv["put"]>>, RpcError.RpcCallError>(true)

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  const server = yield* RpcEndpoint.scoped(KvEndpoint)
  const kv: Kv = yield* service.connect(addressOf(server), KvGateway)
  yield* kv.put({ key: "answer", value: "42" })
  const answer = yield* kv.get("answer", { timeout: "2 seconds" })
  const missing = yield* Effect.flip(kv.get("nope"))
  const recovered = missing._tag === "KeyNotFound" ? missing.key : missing.message
  const size = yield* kv.size()
  return { address: server.address, answer, recovered, size }
})

const parsed = RpcAddress.parse("rpc://127.0.0.1:6123/kv")
const layer: Layer.Layer<RpcService.RpcService, RpcError.ServiceNameInUseError> = RpcServiceModule.layerLocal({ name: "typed" }).pipe(
  Layer.provide(RpcConfig.layer({ askTimeout: Duration.seconds(5), captureAskCallSite: true }))
)

Effect.runPromise(Effect.scoped(program).pipe(Effect.provide(layer))).then((result) => {
  const ok = result.answer === "42" && result.recovered === "nope" && result.size === 1 && parsed._tag === "Success"
  console.log(`${ok ? "ok" : "WRONG"}: ${JSON.stringify(result)}; ${Object.keys(RpcMetrics.names).length} metric names`)
  console.log(
    [RpcConfigModule, RpcEndpointModule, RpcErrorModule, RpcGatewayModule, RpcServiceModule].every((m) =>
      typeof m === "object"
    )
      ? "every public entry point loads"
      : "WRONG: an entry point is missing"
  )
  if (!ok) process.exitCode = 1
}, (error: unknown) => {
  console.error(error)
  process.exitCode = 1
})

export type { Internal }
