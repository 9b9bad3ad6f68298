/**
 * Cycle: two endpoints that ask each other, without deadlocking.
 *
 * `ping(n)` on Ping asks Pong for `pong(n - 1)`, whose handler asks Ping for `ping(n - 2)`, and so on down to
 * zero: while Ping waits for Pong, Pong calls back into Ping. This completes because the handlers wait with
 * `RpcEndpoint.later(...)`: the waiting runs off the main thread, so each mailbox keeps serving calls, and the
 * handlers touch their state again only through `main.callAsync` (which runs on the main thread).
 *
 * Both servers are created first (in the stopped state) and then started, so that each one's `onStart` can
 * connect to the other.
 *
 * Run: npm run example:cycle   (or: npx tsx examples/cycle.ts)
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Schema } from "effect"
import { RpcEndpoint, RpcGateway, RpcService } from "effect-actor-rpc"

const PingGateway = RpcGateway.make("PingGateway", {
  ping: RpcGateway.ask({ payload: Schema.Number, success: Schema.String })
})
const PongGateway = RpcGateway.make("PongGateway", {
  pong: RpcGateway.ask({ payload: Schema.Number, success: Schema.String })
})

const Ping = RpcEndpoint.make({
  id: "ping",
  gateways: [PingGateway],
  init: (main) =>
    Effect.gen(function*() {
      const service = yield* RpcService.RpcService
      let pong: RpcGateway.Client<typeof PongGateway> | undefined
      let exchanges = 0
      return {
        handlers: {
          ping: (n) =>
            Effect.gen(function*() {
              yield* Console.log(`[ping] ping(${n}) received`)
              if (n === 0) return "ping(0)"
              const peer = pong!
              // Wait for Pong off the main thread; re-enter our state through callAsync.
              return RpcEndpoint.later(Effect.gen(function*() {
                const reply = yield* peer.pong(n - 1)
                const count = yield* main.callAsync(Effect.sync(() => ++exchanges), "1 second")
                yield* Console.log(`[ping] ping(${n}) got "${reply}" (ping's exchange #${count})`)
                return `ping(${n}) <- ${reply}`
              }))
            })
        },
        onStart: Effect.gen(function*() {
          pong = yield* service.connect(`local://${service.name}/pong`, PongGateway)
          yield* Console.log(`[ping] started, connected to ${pong.address}`)
        })
      }
    })
})

const Pong = RpcEndpoint.make({
  id: "pong",
  gateways: [PongGateway],
  init: (main) =>
    Effect.gen(function*() {
      const service = yield* RpcService.RpcService
      let ping: RpcGateway.Client<typeof PingGateway> | undefined
      let exchanges = 0
      return {
        handlers: {
          pong: (n) =>
            Effect.gen(function*() {
              yield* Console.log(`[pong] pong(${n}) received`)
              if (n === 0) return "pong(0)"
              const peer = ping!
              return RpcEndpoint.later(Effect.gen(function*() {
                const reply = yield* peer.ping(n - 1)
                const count = yield* main.callAsync(Effect.sync(() => ++exchanges), "1 second")
                yield* Console.log(`[pong] pong(${n}) got "${reply}" (pong's exchange #${count})`)
                return `pong(${n}) <- ${reply}`
              }))
            })
        },
        onStart: Effect.gen(function*() {
          ping = yield* service.connect(`local://${service.name}/ping`, PingGateway)
          yield* Console.log(`[pong] started, connected to ${ping.address}`)
        })
      }
    })
})

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  // Create both servers first (stopped: they answer connects but not calls), then start them.
  const pingServer = yield* service.startServer(Ping)
  const pongServer = yield* service.startServer(Pong)
  yield* pingServer.start
  yield* pongServer.start

  const ping = yield* service.connect(pingServer.address, PingGateway)
  const result = yield* ping.ping(5, { timeout: "2 seconds" })
  yield* Console.log(`[client] ping(5) = ${result}`)
})

// Closing the service's Layer stops both endpoints.
program.pipe(Effect.provide(RpcService.layerLocal({ name: "cycle" })), NodeRuntime.runMain)
