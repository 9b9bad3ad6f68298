/**
 * The README's tour, run as a test so that the documentation keeps compiling and telling the truth.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Schedule, Schema } from "effect"
import { RpcConfig, RpcEndpoint, RpcError, RpcGateway, RpcService } from "effect-actor-rpc"

class KeyNotFound extends Schema.TaggedError<KeyNotFound>()("KeyNotFound", { key: Schema.String }) {}

const KvGateway = RpcGateway.make("KvGateway", {
  getData: RpcGateway.ask({ payload: Schema.String, success: Schema.String, failure: KeyNotFound }),
  putData: RpcGateway.ask({
    payload: Schema.Struct({ key: Schema.String, value: Schema.String }),
    timeout: "2 seconds"
  }),
  notifyEvent: RpcGateway.tell({ payload: Schema.String })
})

const KvEndpoint = RpcEndpoint.make({
  id: "kv",
  gateways: [KvGateway],
  init: (main) =>
    Effect.sync(() => {
      const data = new Map<string, string>()
      return {
        handlers: {
          getData: (key) => {
            const value = data.get(key)
            return value === undefined ? Effect.fail(new KeyNotFound({ key })) : Effect.succeed(value)
          },
          putData: ({ key, value }) => Effect.sync(() => void data.set(key, value)),
          notifyEvent: (event) => Effect.log(`event: ${event}`)
        },
        onStart: Effect.asVoid(main.scheduleRunAsync(Effect.log("a minute after start, on the main thread"), "1 minute"))
      }
    })
})

const JobMasterGateway = RpcGateway.make("JobMasterGateway", {
  jobStatus: RpcGateway.ask({ success: Schema.String }),
  grantLeadership: RpcGateway.ask({ payload: Schema.String })
})

const JobMaster = RpcEndpoint.makeFenced({
  id: "jobmaster",
  gateways: [JobMasterGateway],
  token: Schema.String,
  initialToken: "leader-1",
  init: (main) =>
    Effect.succeed({
      handlers: {
        jobStatus: () => Effect.succeed("RUNNING"),
        grantLeadership: (token) => main.setFencingToken(token)
      }
    })
})

describe("README", () => {
  it.effect("the tour: connect by address, typed failures, fencing, timeouts with retry", () =>
    Effect.gen(function*() {
      const service = yield* RpcService.RpcService
      const kv = yield* service.connect(`local://${service.name}/kv`, KvGateway)
      yield* kv.putData({ key: "answer", value: "42" })
      assert.strictEqual(yield* kv.getData("answer"), "42")
      const missing = yield* kv.getData("nope").pipe(Effect.catchTag("KeyNotFound", () => Effect.succeed("default")))
      assert.strictEqual(missing, "default")
      const retried = yield* kv.getData("answer", { timeout: "200 millis" }).pipe(
        Effect.retry({ schedule: Schedule.exponential("50 millis"), times: 3 })
      )
      assert.strictEqual(retried, "42")

      const address = `local://${service.name}/jobmaster`
      const leader1 = yield* service.connectFenced(address, "leader-1", JobMasterGateway)
      assert.strictEqual(yield* leader1.jobStatus(), "RUNNING")
      yield* leader1.grantLeadership("leader-2")
      const rejected = yield* Effect.flip(leader1.jobStatus())
      assert.instanceOf(rejected, RpcError.FencingTokenError)
    }).pipe(
      Effect.provide(
        Layer.mergeAll(RpcEndpoint.layer(KvEndpoint), RpcEndpoint.layer(JobMaster)).pipe(
          Layer.provideMerge(RpcService.layerLocal({ name: "app" })),
          Layer.provide(RpcConfig.layer({ askTimeout: Duration.seconds(5) }))
        )
      )
    ))

  it.live("across processes: a TCP server Layer on a port range, a TCP client connecting by address", () =>
    Effect.gen(function*() {
      const server = yield* Layer.build(
        RpcEndpoint.layer(KvEndpoint).pipe(Layer.provideMerge(RpcService.layerTcp({ name: "kv-server", port: "0" })))
      )
      const kvAddress = Context.get(server, RpcService.RpcService).address("kv")
      assert.match(kvAddress, /^rpc:\/\/127\.0\.0\.1:\d+\/kv$/)
      yield* Effect.gen(function*() {
        const service = yield* RpcService.RpcService
        const kv = yield* service.connect(kvAddress, KvGateway)
        yield* kv.putData({ key: "answer", value: "42" })
        assert.strictEqual(yield* kv.getData("answer"), "42")
      }).pipe(Effect.provide(RpcService.layerTcp()))
    }))
})
