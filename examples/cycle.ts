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

// Both players speak one gateway: each hit is answered by hitting back, until the count reaches zero.
const RallyGateway = RpcGateway.make("RallyGateway", {
  hit: RpcGateway.ask({ payload: Schema.Number, success: Schema.String })
})

const player = (name: string, peerName: string) =>
  RpcEndpoint.make({
    id: name,
    gateways: [RallyGateway],
    init: (main) =>
      Effect.gen(function*() {
        const service = yield* RpcService.RpcService
        let peer: RpcGateway.Client<typeof RallyGateway> | undefined
        let exchanges = 0
        return {
          handlers: {
            hit: (n) =>
              Effect.gen(function*() {
                yield* Console.log(`[${name}] ${name}(${n}) received`)
                if (n === 0) return `${name}(0)`
                const other = peer!
                // Wait for the peer off the main thread; re-enter our state through callAsync.
                return RpcEndpoint.later(Effect.gen(function*() {
                  const reply = yield* other.hit(n - 1)
                  const count = yield* main.callAsync(Effect.sync(() => ++exchanges), "1 second")
                  yield* Console.log(`[${name}] ${name}(${n}) got "${reply}" (${name}'s exchange #${count})`)
                  return `${name}(${n}) <- ${reply}`
                }))
              })
          },
          onStart: Effect.gen(function*() {
            peer = yield* service.connect(`local://${service.name}/${peerName}`, RallyGateway)
            yield* Console.log(`[${name}] started, connected to ${peer.address}`)
          })
        }
      })
  })

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  // Create both servers first (stopped: they answer connects but not calls), then start them.
  const pingServer = yield* service.startServer(player("ping", "pong"))
  const pongServer = yield* service.startServer(player("pong", "ping"))
  yield* pingServer.start
  yield* pongServer.start

  const ping = yield* service.connect(pingServer.address, RallyGateway)
  const result = yield* ping.hit(5, { timeout: "2 seconds" })
  yield* Console.log(`[client] ping(5) = ${result}`)
})

// Closing the service's Layer stops both endpoints.
program.pipe(Effect.provide(RpcService.layerLocal({ name: "cycle" })), NodeRuntime.runMain)
