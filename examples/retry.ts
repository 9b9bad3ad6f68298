/**
 * Retry: per-call timeouts and typed failures, retried with an Effect Schedule.
 *
 * The endpoint's `fetchReport` is flaky: the first two attempts are slow (they reply after 500 ms, off the
 * main thread, with `RpcEndpoint.later`), the third fails with a typed `Overloaded` error, the fourth
 * succeeds. The client calls with a per-call timeout of 200 ms and retries with exponential backoff, at
 * most 5 retries; each failed attempt is printed, timeouts as `RpcTimeoutError` messages.
 *
 * Run: npm run example:retry   (or: npx tsx examples/retry.ts)
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer, Schedule, Schema } from "effect"
import { RpcConfig, RpcEndpoint, RpcGateway, RpcService } from "effect-actor-rpc"

class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", {
  attempt: Schema.Number
}) {
  override get message(): string {
    return `the report service is overloaded (attempt ${this.attempt}); try again later`
  }
}

const ReportGateway = RpcGateway.make("ReportGateway", {
  fetchReport: RpcGateway.ask({ payload: Schema.String, success: Schema.String, failure: Overloaded })
})

const ReportEndpoint = RpcEndpoint.make({
  id: "reports",
  gateways: [ReportGateway],
  init: () =>
    Effect.sync(() => {
      let attempts = 0
      return {
        handlers: {
          fetchReport: (name) =>
            Effect.gen(function*() {
              const attempt = ++attempts
              yield* Console.log(`[reports] attempt ${attempt} for ${name}`)
              if (attempt <= 2) {
                // Slow: reply after 500 ms without blocking the main thread (the caller gives up at 200 ms).
                return RpcEndpoint.later(Effect.as(Effect.sleep("500 millis"), `${name}: too late`))
              }
              if (attempt === 3) return yield* new Overloaded({ attempt })
              return `${name}: 17 jobs finished, 0 failed`
            })
        }
      }
    })
})

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  const reports = yield* service.connect(`local://${service.name}/reports`, ReportGateway)

  const report = yield* reports.fetchReport("daily", { timeout: "200 millis" }).pipe(
    Effect.tapError((error) => Console.log(`[client] attempt failed with ${error._tag}: ${error.message}`)),
    Effect.retry(Schedule.max([Schedule.exponential("50 millis"), Schedule.recurs(5)]))
  )
  yield* Console.log(`[client] success: ${report}`)
})

// Call-site capture is on by default, so each RpcTimeoutError also names the calling line; turned off here
// to keep the output short.
const MainLayer = RpcEndpoint.layer(ReportEndpoint).pipe(
  Layer.provideMerge(RpcService.layerLocal({ name: "retry" })),
  Layer.provide(RpcConfig.layer({ captureAskCallSite: false }))
)

program.pipe(Effect.provide(MainLayer), NodeRuntime.runMain)
